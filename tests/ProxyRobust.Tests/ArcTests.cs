using System.Buffers.Binary;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Proxy;
using Xunit;

namespace ProxyRobust.Tests;

public sealed class ArcTests
{
    public ArcTests() => TestSupport.InitTorch();

    [Fact]
    public void Area_is_the_trapezoid_rule_on_the_normalised_budget_axis()
    {
        // chance everywhere: 0.5; perfect everywhere: 1; a straight fall from 1 to 0.5: 0.75
        Assert.Equal(0.5, Arc.Area([0, 0.1, 0.2], [0.5, 0.5, 0.5]), 12);
        Assert.Equal(1.0, Arc.Area([0, 0.05, 0.2], [1, 1, 1]), 12);
        Assert.Equal(0.75, Arc.Area([0, 0.1, 0.3], [1, 0.5 + 0.5 * 2 / 3, 0.5]), 12);
        // uneven spacing: (0.05 (1 + 0.9) / 2 + 0.15 (0.9 + 0.6) / 2) / 0.2
        Assert.Equal((0.05 * 0.95 + 0.15 * 0.75) / 0.2, Arc.Area([0, 0.05, 0.2], [1, 0.9, 0.6]), 12);
        Assert.Throws<ArgumentException>(() => Arc.Area([0, 0.1, 0.1], [1, 1, 1]));
    }

    private static void WriteIdx(string dir, string prefix, ImageDataset ds)
    {
        var images = new byte[16 + ds.Count * 784];
        BinaryPrimitives.WriteInt32BigEndian(images, 0x803);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(4), ds.Count);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(8), 28);
        BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(12), 28);
        for (int i = 0; i < ds.Count; i++)
            ds.Image(i).CopyTo(images.AsSpan(16 + i * 784));
        File.WriteAllBytes(Path.Combine(dir, $"{prefix}-images-idx3-ubyte"), images);
        var labels = new byte[8 + ds.Count];
        BinaryPrimitives.WriteInt32BigEndian(labels, 0x801);
        BinaryPrimitives.WriteInt32BigEndian(labels.AsSpan(4), ds.Count);
        for (int i = 0; i < ds.Count; i++)
            labels[8 + i] = (byte)ds.Labels[i];
        File.WriteAllBytes(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte"), labels);
    }

    private static string Store(string path, byte[] images, int[] labels)
    {
        Npy.Write(path, "|u1", [labels.Length, 28, 28, 1], images);
        Npy.WriteLabels(Path.ChangeExtension(path, null) + ".labels.npy", labels);
        return path;
    }

    [Fact]
    public void Arc_of_fashion_mnist_ranks_an_independent_real_sample_lowest_and_noise_highest()
    {
        using var dir = new TempDir();
        using var train = TestSupport.FashionMnist(Split.Train);
        using var test = TestSupport.FashionMnist(Split.Test);
        // the "real" data set: the first 30,000 training images and the test split; proxies never overlap it
        var realDir = dir.File("real");
        Directory.CreateDirectory(realDir);
        using (var half = train.Select(Enumerable.Range(0, 30_000).ToArray()))
            WriteIdx(realDir, "train", half);
        WriteIdx(realDir, "t10k", test);
        const int n = 650;
        using var other = train.Select(Enumerable.Range(30_000, 30_000).ToArray()).Split(n, 1).Taken;
        var otherImages = new byte[n * 784];
        for (int i = 0; i < n; i++)
            other.Image(i).CopyTo(otherImages.AsSpan(i * 784));
        var rng = new Random(3);
        var noise = new byte[n * 784];
        rng.NextBytes(noise);
        var labels = Enumerable.Range(0, n).Select(i => i % 10).ToArray();
        var independent = Store(dir.File("independent.npy"), otherImages, other.Labels);
        var noisy = Store(dir.File("noise.npy"), noise, labels);
        ArcRequest Request(params ArcProxy[] proxies) =>
            new()
            {
                Real = realDir,
                Proxies = proxies,
                Output = dir.File("arc"),
                Budgets = [0, 0.1],
                TrainPerSide = 400,
                TestPerSide = 250,
                Epochs = 2,
            };
        var first = ArcRun.Execute(Request(new ArcProxy("independent", independent), new ArcProxy("noise", noisy)));
        var arc = first.Proxies.ToDictionary(p => p.Name, p => p.Arc);
        Assert.True(arc["independent"] is > 0.4 and < 0.62, $"{arc["independent"]}");
        Assert.True(arc["noise"] > 0.95, $"{arc["noise"]}");
        foreach (var p in first.Proxies.SelectMany(x => x.Points))
            Assert.Equal(500, p.Points);

        // adding a proxy reuses the finished discriminators: their result files are untouched
        var stamps = first
            .Proxies.SelectMany(p => p.Points)
            .ToDictionary(p => p.Folder, p => File.GetLastWriteTimeUtc(Path.Combine(p.Folder, "result.json")));
        var oneClass = Enumerable.Range(0, train.Count).Where(i => train.Labels[i] == 1).Skip(5000).Take(n).ToArray();
        var trousers = new byte[n * 784];
        for (int i = 0; i < n; i++)
            train.Image(oneClass[i]).CopyTo(trousers.AsSpan(i * 784));
        var wrong = Store(dir.File("trousers.npy"), trousers, labels);
        var second = ArcRun.Execute(
            Request(
                new ArcProxy("independent", independent),
                new ArcProxy("noise", noisy),
                new ArcProxy("trousers", wrong)
            )
        );
        foreach (var (folder, stamp) in stamps)
            Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(folder, "result.json")));
        var ranked = second.Proxies.OrderBy(p => p.Arc).Select(p => p.Name).ToArray();
        Assert.Equal("independent", ranked[0]);
        double trouserArc = second.Proxies.Single(p => p.Name == "trousers").Arc;
        Assert.True(trouserArc > arc["independent"] + 0.15, $"{trouserArc} vs {arc["independent"]}");
        Assert.True(File.Exists(second.Plot));
        Assert.Contains("| 1 | independent |", File.ReadAllText(second.Markdown));
    }
}

public sealed class ScoreTests
{
    public ScoreTests() => TestSupport.InitTorch();

    [Fact]
    public void Scores_are_the_discriminators_probability_of_the_real_class()
    {
        using var dir = new TempDir();
        TorchSharp.torch.manual_seed(4);
        using var model = Models.ArchSpec.For("small-cnn", 1, 28, 28, 2, [0.3f], [0.3f]).Create();
        Training.Checkpoint.Save(dir.File("d"), model, null, null, new System.Text.Json.Nodes.JsonObject());
        var (images, labels) = TestSupport.RandomImages(37, 28, 28, 1, 10, seed: 6);
        Npy.Write(dir.File("s.npy"), "|u1", [37, 28, 28, 1], images);
        Npy.WriteLabels(dir.File("s.labels.npy"), labels);
        var o = ScoreRun.Execute(new ScoreRequest(dir.File("d"), dir.File("s.npy"), BatchSize: 10));
        var scores = Npy.ReadFloats(o.Scores);
        Assert.Equal(dir.File("s.scores.npy"), o.Scores);
        Assert.Equal(37, scores.Length);
        // the same probabilities computed directly, image by image
        model.eval();
        using var noGrad = TorchSharp.torch.no_grad();
        for (int i = 0; i < 37; i += 9)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            var x = TorchSharp
                .torch.tensor(images.AsSpan(i * 784, 784).ToArray().Select(b => b / 255f).ToArray())
                .reshape(1, 1, 28, 28);
            var p = TorchSharp.torch.nn.functional.softmax(model.call(x), 1)[0, 0].item<float>();
            Assert.Equal(p, scores[i], 1e-5);
        }
        // a 10-class classifier is not a discriminator
        using var tenClass = Models.ArchSpec.For("small-cnn", 1, 28, 28, 10, [0.3f], [0.3f]).Create();
        Training.Checkpoint.Save(dir.File("c"), tenClass, null, null, new System.Text.Json.Nodes.JsonObject());
        Assert.Throws<Core.DataFormatException>(() =>
            ScoreRun.Execute(new ScoreRequest(dir.File("c"), dir.File("s.npy")))
        );
    }
}

public sealed class CompareProxiesTests
{
    public CompareProxiesTests() => TestSupport.InitTorch();

    [Fact]
    public void Spearman_and_its_exact_p_value_match_hand_computed_cases()
    {
        Assert.Equal(1, RankCorrelation.Spearman([1, 2, 3, 4], [10, 20, 30, 40]), 12);
        Assert.Equal(-1, RankCorrelation.Spearman([1, 2, 3, 4], [4, 3, 2, 1]), 12);
        // ties take average ranks: x ranks (1.5, 1.5, 3), y ranks (1, 2, 3)
        double expected = 1.5 / Math.Sqrt(1.5 * 2); // deviations (-0.5, -0.5, 1) and (-1, 0, 1)
        Assert.Equal(expected, RankCorrelation.Spearman([5, 5, 7], [1, 2, 3]), 12);
        Assert.Equal(new[] { 1.5, 1.5, 3 }, RankCorrelation.Ranks([5, 5, 7]));
        // perfect order of 4: only the identity and the reversal reach |rho| = 1, 2 of 24 orderings
        Assert.Equal(2.0 / 24, RankCorrelation.ExactPValue([1, 2, 3, 4], [1, 2, 3, 4]), 12);
        // rho = 0 for this ordering of 4 (d^2 sum 10): every ordering has |rho| >= 0
        Assert.Equal(0, RankCorrelation.Spearman([1, 2, 3, 4], [2, 4, 1, 3]), 12);
        Assert.Equal(1, RankCorrelation.ExactPValue([1, 2, 3, 4], [2, 4, 1, 3]), 12);
    }

    [Fact]
    public void Compare_proxies_on_fashion_mnist_puts_real_images_before_noise_in_every_column()
    {
        using var dir = new TempDir();
        var (classifier, _) = TestSupport.PgdTrainedFashionMnist();
        var noise = new byte[600 * 784];
        new Random(2).NextBytes(noise);
        Npy.Write(dir.File("noise.npy"), "|u1", [600, 28, 28, 1], noise);
        Npy.WriteLabels(dir.File("noise.labels.npy"), Enumerable.Range(0, 600).Select(i => i % 10).ToArray());
        var request = new CompareProxiesRequest
        {
            // the held-out real proxy as the demo draws it: a store of 600 training images the cells do not train on
            Proxies = [new ArcProxy("real", "holdout:600"), new ArcProxy("noise", dir.File("noise.npy"))],
            Classifier = classifier,
            Output = dir.File("compare"),
            RealImages = 100,
            Settings = CompareProxiesRun.DefaultSettings with { Epochs = 1, EvalPoints = 60, ValSize = 30 },
            QualityImages = 100,
            ArcBudgets = [0, 0.1],
            ArcTrainPerSide = 120,
            ArcTestPerSide = 60,
            ArcEpochs = 2,
            AdaptiveProxy = "noise",
        };
        var report = CompareProxiesRun.Execute(request)!;
        var byName = report.Proxies.ToDictionary(p => p.Name);
        Assert.True(byName["real"].Arc < byName["noise"].Arc, "ARC");
        Assert.True(byName["real"].FrechetDistance < byName["noise"].FrechetDistance, "FD");
        Assert.True(byName["real"].PixelWasserstein < byName["noise"].PixelWasserstein, "W1");
        Assert.True(byName["real"].Recall > byName["noise"].Recall, "recall");
        // the stated gain is the paired difference of the two cells' PGD-20 accuracies on the same points
        var exp = Experiment.Read(dir.File("compare"));
        double Pgd(string cell) => exp.Cells.Single(c => c.Name == cell).Evaluation.Pgd20!.Value;
        Assert.Equal(100 * (Pgd("real-s0") - Pgd("baseline-s0")), byName["real"].Gain, 1e-9);
        Assert.Equal(7, report.Correlations.Count);
        // adaptive sampling: one score per image, and the stated difference is that of the two cells on the same points
        Assert.Equal(600, Npy.ReadFloats(Path.Combine(dir.File("compare"), "adaptive", "noise.scores.npy")).Length);
        var adaptive = report.Adaptive ?? throw new Exception("no adaptive comparison");
        Assert.Equal(100 * (Pgd("noise-top-s0") - Pgd("noise-random-s0")), adaptive.Difference, 1e-9);
        Assert.Equal(adaptive.Difference, adaptive.PerSeed.Single(), 1e-9);
        Assert.Contains("## Adaptive against uniform sampling", File.ReadAllText(report.Markdown));
        // the held-out store: 600 real training images, none of them among the cells' real training images
        using var heldOut = DatasetLoader.Load(byName["real"].Store, Split.Train);
        Assert.Equal(600, heldOut.Count);
        using var train = TestSupport.FashionMnist(Split.Train);
        var (val, cellTrain, _) = TrainRun.RealSplits(train, valSize: 30, trainSize: 100, dataSeed: 0);
        var used = Enumerable
            .Range(0, cellTrain.Count)
            .Select(i => Convert.ToHexString(cellTrain.Image(i)))
            .Concat(Enumerable.Range(0, val!.Count).Select(i => Convert.ToHexString(val.Image(i))))
            .ToHashSet();
        Assert.Equal(130, used.Count);
        Assert.DoesNotContain(Enumerable.Range(0, 600), i => used.Contains(Convert.ToHexString(heldOut.Image(i))));
        var md = File.ReadAllText(report.Markdown);
        Assert.Contains("| ARC |", md);
        Assert.Contains("Ranked by gain:", md);
        // rerunning redoes nothing: every cell, report and discriminator is reused
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(dir.File("compare"), "cells", "real-s0", "result.json"));
        CompareProxiesRun.Execute(request);
        Assert.Equal(
            stamp,
            File.GetLastWriteTimeUtc(Path.Combine(dir.File("compare"), "cells", "real-s0", "result.json"))
        );
    }
}
