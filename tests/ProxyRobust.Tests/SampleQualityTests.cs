using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Models;
using ProxyRobust.Proxy;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class SampleQualityTests
{
    public SampleQualityTests() => TestSupport.InitTorch();

    private static double[,] Rows(double[][] rows)
    {
        var m = new double[rows.Length, rows[0].Length];
        for (int i = 0; i < rows.Length; i++)
        {
            for (int j = 0; j < rows[0].Length; j++)
                m[i, j] = rows[i][j];
        }
        return m;
    }

    [Fact]
    public void Frechet_distance_of_two_dimensional_gaussians_matches_the_closed_form()
    {
        // For 2x2 PSD M, Tr(M^1/2) = sqrt(Tr M + 2 sqrt(det M)); with M = S_a^1/2 S_b S_a^1/2, Tr M = Tr(S_a S_b) and
        // det M = det S_a det S_b. The two covariances do not commute, so no shortcut through a shared basis.
        double[,] sa =
        {
            { 2.0, 0.6 },
            { 0.6, 1.0 },
        };
        double[,] sb =
        {
            { 0.5, -0.3 },
            { -0.3, 1.5 },
        };
        double[] ma = [1.0, -2.0],
            mb = [0.5, 0.5];
        double trProduct = sa[0, 0] * sb[0, 0] + sa[0, 1] * sb[1, 0] + sa[1, 0] * sb[0, 1] + sa[1, 1] * sb[1, 1];
        double det(double[,] s) => s[0, 0] * s[1, 1] - s[0, 1] * s[1, 0];
        double expected =
            (ma[0] - mb[0]) * (ma[0] - mb[0])
            + (ma[1] - mb[1]) * (ma[1] - mb[1])
            + sa[0, 0]
            + sa[1, 1]
            + sb[0, 0]
            + sb[1, 1]
            - 2 * Math.Sqrt(trProduct + 2 * Math.Sqrt(det(sa) * det(sb)));
        Assert.Equal(expected, FrechetDistance.FromMoments(ma, sa, mb, sb), 1e-10);
        Assert.Equal(0, FrechetDistance.FromMoments(ma, sa, ma, sa), 1e-10);
    }

    [Fact]
    public void Frechet_distance_of_samples_approaches_the_closed_form_of_their_distributions()
    {
        // independent coordinates: d^2 = |mu_a - mu_b|^2 + sum (s_a - s_b)^2 with s the standard deviations
        var rng = new Random(4);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        double[] sdA = [1, 2, 0.5],
            sdB = [2, 1, 0.5],
            shift = [0, 1, -1];
        int n = 200_000;
        var a = new double[n, 3];
        var b = new double[n, 3];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < 3; j++)
            {
                a[i, j] = sdA[j] * Gauss();
                b[i, j] = shift[j] + sdB[j] * Gauss();
            }
        }
        double expected = 2 + 1 + 1; // |shift|^2 = 2, (1-2)^2 + (2-1)^2 + 0
        Assert.Equal(expected, FrechetDistance.Between(a, b), 0.05);
    }

    [Fact]
    public void Moments_are_the_mean_and_unbiased_covariance()
    {
        var rows = Rows([
            [1, 2],
            [3, 0],
            [5, 4],
        ]);
        var (mean, cov) = FrechetDistance.Moments(rows);
        Assert.Equal(new[] { 3.0, 2.0 }, mean);
        // deviations (-2, 0), (0, -2), (2, 2): sums of products / (n - 1) = 2
        Assert.Equal(4.0, cov[0, 0], 1e-12);
        Assert.Equal(2.0, cov[0, 1], 1e-12);
        Assert.Equal(4.0, cov[1, 1], 1e-12);
    }

    /// <summary>Kynkäänniemi et al.'s definition, by loops over every pair.</summary>
    private static (double Precision, double Recall) BruteForce(double[][] real, double[][] fake, int k)
    {
        static double Dist(double[] u, double[] v) => Math.Sqrt(u.Zip(v, (p, q) => (p - q) * (p - q)).Sum());
        static double[] Radii(double[][] set, int k) =>
            set.Select((p, i) => set.Where((_, j) => j != i).Select(q => Dist(p, q)).OrderBy(d => d).ElementAt(k - 1))
                .ToArray();
        var rr = Radii(real, k);
        var rf = Radii(fake, k);
        double precision = fake.Count(f => real.Where((r, i) => Dist(f, r) <= rr[i]).Any()) / (double)fake.Length;
        double recall = real.Count(r => fake.Where((f, j) => Dist(r, f) <= rf[j]).Any()) / (double)real.Length;
        return (precision, recall);
    }

    [Fact]
    public void Precision_and_recall_match_a_brute_force_count_over_all_pairs()
    {
        var rng = new Random(7);
        double[][] Set(int n, double offset) =>
            Enumerable
                .Range(0, n)
                .Select(_ => Enumerable.Range(0, 3).Select(_ => offset + 2 * rng.NextDouble()).ToArray())
                .ToArray();
        foreach (var (real, fake) in new[] { (Set(60, 0), Set(45, 0.7)), (Set(1500, 0), Set(1200, 1.0)) })
        {
            foreach (var k in new[] { 1, 3, 5 })
            {
                var expected = BruteForce(real, fake, k);
                var (p, r) = PrecisionRecall.Compute(Rows(real), Rows(fake), k);
                // float32 distances: a point exactly on a ball's boundary may fall either way, at most a few points
                Assert.Equal(expected.Precision, p, 3.0 / fake.Length);
                Assert.Equal(expected.Recall, r, 3.0 / real.Length);
            }
        }
    }

    [Fact]
    public void A_collapsed_generator_has_zero_recall_and_a_faithful_one_full_precision()
    {
        var rng = new Random(9);
        var real = Enumerable.Range(0, 300).Select(_ => new[] { rng.NextDouble(), rng.NextDouble() }).ToArray();
        // every sample the same real-looking point: inside the real manifold, but its own balls have radius 0
        var collapsed = Enumerable.Range(0, 300).Select(_ => new[] { 0.5, 0.5 }).ToArray();
        var (p, r) = PrecisionRecall.Compute(Rows(real), Rows(collapsed));
        Assert.Equal(1, p);
        Assert.True(r < 0.01, $"recall {r}");
        var (pSame, rSame) = PrecisionRecall.Compute(Rows(real), Rows(real));
        Assert.Equal(1, pSame);
        Assert.Equal(1, rSame);
    }

    [Fact]
    public void Features_are_what_the_last_linear_layer_maps_to_the_logits()
    {
        foreach (
            var (arch, weight, bias) in new[]
            {
                ("small-cnn", "net.fc2.weight", "net.fc2.bias"),
                ("preact-resnet18", "net.linear.weight", "net.linear.bias"),
            }
        )
        {
            torch.manual_seed(1);
            using var model = ArchSpec.For(arch, 1, 28, 28, 10, [0.3f], [0.3f]).Create();
            model.eval();
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var x = rand(4, 1, 28, 28);
            var p = model.state_dict();
            var viaFeatures = model.Features(x).matmul(p[weight].t()) + p[bias];
            Assert.True(viaFeatures.allclose(model.call(x), 1e-4, 1e-5), arch);
        }
    }

    [Fact]
    public void Report_on_fashion_mnist_ranks_real_images_above_noisy_and_collapsed_stores()
    {
        var (classifier, _) = TestSupport.PgdTrainedFashionMnist();
        var dir = Directory.CreateTempSubdirectory("proxyrobust-quality-").FullName;
        try
        {
            using var train = TestSupport.FashionMnist(Split.Train);
            // the last 20,000 training images: none of the classifier's 2,000
            using var pool = train.Select(Enumerable.Range(40_000, 20_000).ToArray());
            using var real = pool.Split(1000, 3).Taken;
            int size = real.ImageBytes;
            var clean = new byte[real.Count * size];
            for (int i = 0; i < real.Count; i++)
                real.Image(i).CopyTo(clean.AsSpan(i * size));
            var rng = new Random(5);
            var noisy = clean.Select(v => (byte)Math.Clamp(v + rng.Next(-160, 161), 0, 255)).ToArray();
            var firstOfClass = Enumerable.Range(0, 10).Select(c => Array.IndexOf(real.Labels, c)).ToArray();
            var collapsed = new byte[clean.Length];
            for (int i = 0; i < real.Count; i++)
                clean.AsSpan(firstOfClass[real.Labels[i]] * size, size).CopyTo(collapsed.AsSpan(i * size));
            SyntheticReport Report(string name, byte[] images, bool robust = false)
            {
                var path = Path.Combine(dir, name + ".npy");
                Npy.Write(path, "|u1", [real.Count, 28, 28, 1], images);
                Npy.WriteLabels(Path.Combine(dir, name + ".labels.npy"), real.Labels);
                return SyntheticReportRun.Execute(
                    new SyntheticReportRequest(
                        path,
                        classifier,
                        Path.Combine(dir, name),
                        Count: 1000,
                        WassersteinPerClass: 40,
                        WassersteinRepeats: 3,
                        RobustModel: robust ? classifier : null,
                        RobustPoints: 20
                    )
                );
            }
            var r = Report("real", clean, robust: true);
            var n = Report("noisy", noisy, robust: true);
            var c = Report("collapsed", collapsed);

            Assert.True(r.Store.FrechetDistance < n.Store.FrechetDistance / 3, $"{r.Store} vs {n.Store}");
            Assert.True(r.Store.FrechetDistance < c.Store.FrechetDistance / 3, $"{r.Store} vs {c.Store}");
            Assert.True(r.Store.MeanClassFrechetDistance < c.Store.MeanClassFrechetDistance / 3);
            Assert.True(r.Store.Recall > 0.6 && c.Store.Recall < 0.05, $"{r.Store.Recall} vs {c.Store.Recall}");
            Assert.True(r.Store.Precision > 0.6, $"{r.Store.Precision}");
            Assert.True(r.Store.Recognised > n.Store.Recognised, $"{r.Store.Recognised} vs {n.Store.Recognised}");
            // the conditional Wasserstein estimates order the stores the same way, in both spaces
            foreach (var other in new[] { n.Store, c.Store })
            {
                Assert.True(r.Store.PixelWasserstein!.Mean < other.PixelWasserstein!.Mean, $"{r.Store} vs {other}");
                Assert.True(r.Store.FeatureWasserstein!.Mean < other.FeatureWasserstein!.Mean, $"{r.Store} vs {other}");
            }
            Assert.Equal(40, r.Store.PixelWasserstein!.PerClassSamples);
            // the measured side of the bound: distances are non-negative and their gap below the (upper-biased)
            // pixel-space estimate of the conditional W1
            foreach (var q in new[] { r, n })
            {
                var g = q.TransferGap!;
                Assert.Equal(20, g.Points);
                Assert.True(g.MeanDistanceReal >= 0 && g.MeanDistanceProxy >= 0, $"{g}");
                Assert.True(g.Gap <= q.Store.PixelWasserstein!.Mean, $"{g} vs W1 {q.Store.PixelWasserstein.Mean}");
            }
            Assert.Null(c.TransferGap);
            // held-out real images are the real store's equal: its distance is of the reference's order
            Assert.NotNull(r.RealReference);
            Assert.InRange(r.Store.FrechetDistance, 0, 3 * r.RealReference!.FrechetDistance + 1);
            Assert.Equal(Enumerable.Repeat(100, 10), r.Classes.Select(q => q.Images));
            Assert.Equal("T-shirt/top", r.Classes[0].Name);
            Assert.True(File.Exists(Path.Combine(dir, "real", "samples.png")));
            Assert.Contains("Fréchet distance", File.ReadAllText(Path.Combine(dir, "real", "report.md")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
