using ProxyRobust.Certification;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class CertificationTests
{
    public CertificationTests() => TestSupport.InitTorch();

    /// <summary>P(X &gt;= k) for X ~ Bin(n, p), by direct summation of the pmf in log space (independent of any
    /// library).</summary>
    private static double UpperTail(long k, long n, double p)
    {
        double sum = 0;
        for (long i = k; i <= n; i++)
        {
            double logPmf = LogChoose(n, i) + i * Math.Log(p) + (n - i) * Math.Log(1 - p);
            sum += Math.Exp(logPmf);
        }
        return sum;
    }

    private static double LogChoose(long n, long k)
    {
        double s = 0;
        for (long i = 1; i <= k; i++)
            s += Math.Log(n - k + i) - Math.Log(i);
        return s;
    }

    [Theory]
    [InlineData(5, 10, 0.025)]
    [InlineData(99, 100, 0.001)]
    [InlineData(530, 1000, 0.001)]
    [InlineData(1, 20, 0.05)]
    public void Clopper_pearson_lower_bound_solves_its_defining_equation(long k, long n, double alpha)
    {
        // The one-sided lower bound p_L is the p at which P(X >= k | p) = alpha.
        double pL = SmoothingStatistics.ClopperPearsonLower(k, n, alpha);
        Assert.Equal(alpha, UpperTail(k, n, pL), 8);
    }

    [Fact]
    public void Clopper_pearson_matches_published_and_closed_form_values()
    {
        // 5 of 10 at 95% two-sided: (0.187086, 0.812914) (Clopper & Pearson 1934; e.g. R binom.test(5, 10)).
        Assert.Equal(0.1870860, SmoothingStatistics.ClopperPearsonLower(5, 10, 0.025), 6);
        // All n successes: the bound is alpha^(1/n) in closed form.
        Assert.Equal(Math.Pow(0.001, 1e-5), SmoothingStatistics.ClopperPearsonLower(100_000, 100_000, 0.001), 10);
        Assert.Equal(0.0, SmoothingStatistics.ClopperPearsonLower(0, 100, 0.001));
    }

    [Fact]
    public void Normal_quantile_matches_published_values()
    {
        Assert.Equal(1.959963984540054, SmoothingStatistics.NormalQuantile(0.975), 9);
        Assert.Equal(3.090232306167813, SmoothingStatistics.NormalQuantile(0.999), 9);
        Assert.Equal(-2.326347874040841, SmoothingStatistics.NormalQuantile(0.01), 9);
        Assert.Equal(0.0, SmoothingStatistics.NormalQuantile(0.5), 12);
    }

    [Fact]
    public void Binomial_test_matches_direct_summation()
    {
        Assert.Equal(Math.Min(1, 2 * UpperTail(60, 100, 0.5)), SmoothingStatistics.BinomialTestHalf(60, 40), 10);
        // 0.021484375
        Assert.Equal(Math.Min(1, 2 * UpperTail(9, 10, 0.5)), SmoothingStatistics.BinomialTestHalf(1, 9), 10);
        Assert.Equal(1.0, SmoothingStatistics.BinomialTestHalf(50, 50));
    }

    /// <summary>
    /// Two classes on 1x4x4 inputs: f(x) = 1 where w.x + b &gt; 0. Smoothed, pA = Phi(margin / sigma) with margin
    /// = (w.x + b)/||w||, so the exact certified radius is sigma Phi^-1(pA) = margin: the distance to the boundary.
    /// </summary>
    private static (Classifier Model, Tensor X, double Margin) LinearCase(double margin)
    {
        var spec = ArchSpec.For("small-cnn", 1, 4, 4, 2);
        var lin = nn.Linear(16, 2);
        var w = ones(16) / 4.0; // ||w|| = 1
        using (no_grad())
        {
            lin.weight!.zero_();
            lin.weight![1].copy_(w);
            lin.bias!.zero_();
            lin.bias![1].fill_(-1.0); // the boundary is w.x = 1
        }
        var model = new Classifier(spec, nn.Sequential(("flatten", nn.Flatten()), ("fc", lin)));
        // Start on the boundary (x0 = 0.25 everywhere: w.x0 = 1) and move `margin` along the unit normal w.
        var x0 = full(1, 4, 4, 0.25f);
        var x = x0 + (w * margin).view(1, 4, 4);
        return (model, x, margin);
    }

    [Fact]
    public void Certified_radius_of_a_linear_classifier_converges_to_the_distance_to_its_boundary()
    {
        var (model, x, margin) = LinearCase(0.3);
        var smoothed = new SmoothedClassifier(model, 2, sigma: 0.25, batchSize: 10_000);
        double previousGap = double.MaxValue;
        foreach (int n in new[] { 1_000, 10_000, 100_000 })
        {
            var c = smoothed.Certify(x, 100, n, 0.001, seed: n);
            Assert.Equal(1, c.Prediction);
            double gap = margin - c.Radius;
            Assert.True(gap > 0, $"n={n}: certified {c.Radius} above the true radius {margin}");
            Assert.True(gap < previousGap, $"n={n}: gap {gap} did not shrink");
            previousGap = gap;
        }
        Assert.True(previousGap < 0.02, $"at n=100,000 the certified radius is {previousGap} below the true one");
    }

    [Fact]
    public void Certificates_exceed_the_true_radius_no_more_often_than_alpha_allows()
    {
        var (model, x, margin) = LinearCase(0.2);
        var smoothed = new SmoothedClassifier(model, 2, sigma: 0.5, batchSize: 2_000);
        int trials = 200,
            above = 0;
        for (int t = 0; t < trials; t++)
            if (
                smoothed.Certify(x, 50, 2_000, alpha: 0.05, seed: 1000 + t) is { Abstained: false } c
                && c.Radius > margin
            )
                above++;
        // Expected at most alpha * trials = 10; the probability of more than 20 under Bin(200, 0.05) is below 0.2%.
        Assert.True(above <= 20, $"{above} of {trials} certificates exceed the true radius");
    }

    [Fact]
    public void A_point_on_the_boundary_abstains_and_predict_abstains_too()
    {
        var (model, x, _) = LinearCase(0.0);
        var smoothed = new SmoothedClassifier(model, 2, sigma: 0.25, batchSize: 5_000);
        Assert.True(smoothed.Certify(x, 100, 10_000, 0.001, seed: 1).Abstained);
        Assert.Equal(-1, smoothed.Predict(x, 10_000, 0.001, seed: 2));
        var (m2, far, _) = LinearCase(1.0);
        Assert.Equal(1, new SmoothedClassifier(m2, 2, 0.25, 5_000).Predict(far, 10_000, 0.001, seed: 3));
    }
}

public sealed class CertifyCliTests
{
    [Fact]
    public void Certify_on_fashion_mnist_writes_consistent_tsv_and_summary()
    {
        // End to end on real data: a Gaussian-noise-trained small CNN, 40 test points, n = 500.
        using var tmp = new TempDir();
        var train = TestSupport.RunCli(
            "train",
            "--method",
            "gaussian",
            "--sigma",
            "0.25",
            "--train-size",
            "3000",
            "--eval-size",
            "100",
            "--epochs",
            "3",
            "--lr",
            "0.05",
            "--out",
            tmp.File("noise")
        );
        Assert.True(train.Code == 0, train.Err);
        var r = TestSupport.RunCli(
            "certify",
            "--checkpoint",
            tmp.File("noise"),
            "--sigma",
            "0.25",
            "--n0",
            "50",
            "--n",
            "500",
            "--alpha",
            "0.001",
            "--n-examples",
            "40",
            "--out",
            tmp.File("cert.tsv")
        );
        Assert.True(r.Code == 0, r.Err);
        var rows = File.ReadAllLines(tmp.File("cert.tsv")).Skip(1).Select(l => l.Split('\t')).ToList();
        Assert.Equal(40, rows.Count);
        // No radius can exceed the one for pA-hat = 1: sigma * Phi^-1(alpha^(1/n)) (the Clopper-Pearson bound for n of
        // n).
        double cap = 0.25 * SmoothingStatistics.NormalQuantile(Math.Pow(0.001, 1.0 / 500));
        var radii = rows.Select(x => double.Parse(x[3], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.All(radii, rad => Assert.InRange(rad, 0, cap + 1e-4));
        Assert.Contains(radii, rad => Math.Abs(rad - cap) < 1e-4); // some confident points reach it exactly
        // Abstentions have radius 0 and prediction -1; correct means prediction == label.
        Assert.All(rows, x => Assert.Equal(x[2] == x[1] ? "1" : "0", x[4]));
        var summary = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tmp.File("cert.json")))!;
        var accAtHalf = summary["certifiedAccuracy"]!.AsArray().First(a => a!["radius"]!.GetValue<double>() == 0.5)![
            "accuracy"
        ]!.GetValue<double>();
        Assert.Equal(rows.Count(x => x[4] == "1" && radii[rows.IndexOf(x)] >= 0.5) / 40.0, accAtHalf, 10);
        var accAtZero = summary["certifiedAccuracy"]!.AsArray()[0]!["accuracy"]!.GetValue<double>();
        Assert.True(accAtZero > 0.5, $"certified accuracy at radius 0 is {accAtZero}");
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, File.ReadAllBytes(tmp.File("cert.png"))[..4]);
        // Interrupted after 15 points (the 16th line cut mid-write), then --resume: the same certificates as the run
        // above.
        var lines = File.ReadAllLines(tmp.File("cert.tsv"));
        File.WriteAllText(tmp.File("again.tsv.partial"), string.Join("\n", lines.Take(16)) + "\n" + lines[16][..5]);
        var resumed = TestSupport.RunCli(
            "certify",
            "--checkpoint",
            tmp.File("noise"),
            "--sigma",
            "0.25",
            "--n0",
            "50",
            "--n",
            "500",
            "--alpha",
            "0.001",
            "--n-examples",
            "40",
            "--out",
            tmp.File("again.tsv"),
            "--resume"
        );
        Assert.True(resumed.Code == 0, resumed.Err);
        Assert.Contains("15 of 40 points already certified", resumed.Out);
        var again = File.ReadAllLines(tmp.File("again.tsv")).Skip(1).Select(l => l.Split('\t')[..5]).ToList();
        Assert.Equal(rows.Select(x => x[..5]), again);
        Assert.False(File.Exists(tmp.File("again.tsv.partial")));
        // A second model's curve is drawn from its summary; a file that is no summary fails before any work.
        File.WriteAllText(tmp.File("bad.json"), "{ \"x\": 1 }");
        var bad = TestSupport.RunCli(
            "certify",
            "--checkpoint",
            tmp.File("noise"),
            "--sigma",
            "0.25",
            "--n",
            "100",
            "--n-examples",
            "5",
            "--out",
            tmp.File("c2.tsv"),
            "--compare",
            tmp.File("bad.json")
        );
        Assert.Equal(1, bad.Code);
        Assert.Contains("bad.json", bad.Err);
        Assert.False(File.Exists(tmp.File("c2.tsv")));
    }
}
