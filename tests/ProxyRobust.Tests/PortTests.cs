using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Training;

namespace ProxyRobust.Tests;

public sealed class PortTests
{
    public PortTests() => TestSupport.InitTorch();

    private static ImageDataset Numbered(int n, int classes = 10)
    {
        // image i holds the value i % 256 in its first pixel and i / 256 in its second: indices can be read back
        var images = new byte[n * 16];
        for (int i = 0; i < n; i++)
        {
            images[i * 16] = (byte)(i % 256);
            images[i * 16 + 1] = (byte)(i / 256);
        }
        return new ImageDataset(
            "mem",
            new ArrayImageStore(images, 16),
            Enumerable.Range(0, n).Select(i => i % classes).ToArray(),
            4,
            4,
            1,
            Enumerable.Range(0, classes).Select(i => $"{i}").ToArray()
        );
    }

    private static int IndexOf(HostBatch b, int i) =>
        (int)Math.Round(b.Images[i * 16] * 255) + 256 * (int)Math.Round(b.Images[i * 16 + 1] * 255);

    [Fact]
    public void Synthetic_stream_visits_every_image_once_per_pass_independently_of_resume()
    {
        using var data = Numbered(1000);
        var stream = new SyntheticStream(data, 64, AugmentOptions.None, seed: 3);
        var batch = stream.NewBatch();
        var seen = new List<int>();
        for (long step = 0; step < 1000 / 64 * 2 + 2; step++)
        {
            stream.Fill(step, batch);
            for (int i = 0; i < batch.Count; i++)
                seen.Add(IndexOf(batch, i));
        }
        Assert.Equal(Enumerable.Range(0, 1000), seen.Take(1000).Order());
        Assert.Equal(Enumerable.Range(0, 1000), seen.Skip(1000).Take(1000).Order());
        Assert.NotEqual(seen.Take(1000), seen.Skip(1000).Take(1000)); // a new order each pass
        // A fresh stream (as after a resume) asked for step 20 gives the same images.
        var fresh = new SyntheticStream(data, 64, AugmentOptions.None, seed: 3);
        Assert.Equal(stream.Indices(20), fresh.Indices(20));
    }

    [Fact]
    public void Scores_draw_images_in_proportion()
    {
        using var data = Numbered(4);
        var stream = new SyntheticStream(data, 1000, AugmentOptions.None, seed: 1, scores: [1f, 0f, 3f, 0f]);
        var counts = new int[4];
        for (long s = 0; s < 20; s++)
        {
            foreach (var i in stream.Indices(s))
                counts[i]++;
        }
        Assert.Equal(0, counts[1] + counts[3]);
        // 20,000 draws with p = 1/4: standard deviation 61; allow 5 of them
        Assert.InRange(counts[0], 5000 - 305, 5000 + 305);
        Assert.Throws<DataFormatException>(() =>
            new SyntheticStream(data, 8, AugmentOptions.None, 1, [1f, float.NaN, 1f, 1f])
        );
        Assert.Throws<DataFormatException>(() => new SyntheticStream(data, 8, AugmentOptions.None, 1, [1f, 1f]));
    }

    [Fact]
    public void Bad_synthetic_stores_are_rejected_before_training_starts()
    {
        using var tmp = new TempDir();
        TrainRunConfig Config(string synthetic, string name) =>
            new()
            {
                TrainSize = 100,
                Method = TrainMethod.Pgd,
                Synthetic = synthetic,
                OutputDir = tmp.File(name),
                Options = new TrainOptions { Epochs = 1, BatchSize = 50 },
            };
        var (img28, lab) = TestSupport.RandomImages(10, 28, 28, 1, 10, seed: 1);
        // labels count differs from images count
        Npy.Write(tmp.File("a.npy"), "|u1", [10, 28, 28, 1], img28);
        Npy.WriteLabels(tmp.File("a.labels.npy"), lab[..9]);
        Assert.Contains(
            "9 labels",
            Assert.Throws<DataFormatException>(() => TrainRun.Execute(Config(tmp.File("a.npy"), "a"))).Message
        );
        // image size different from the real data's
        var (img32, _) = TestSupport.RandomImages(10, 32, 32, 1, 10, seed: 2);
        Npy.Write(tmp.File("b.npy"), "|u1", [10, 32, 32, 1], img32);
        Npy.WriteLabels(tmp.File("b.labels.npy"), lab);
        Assert.Contains(
            "32x32x1",
            Assert.Throws<DataFormatException>(() => TrainRun.Execute(Config(tmp.File("b.npy"), "b"))).Message
        );
        // labels outside the real data's classes
        Npy.Write(tmp.File("c.npy"), "|u1", [10, 28, 28, 1], img28);
        Npy.WriteLabels(tmp.File("c.labels.npy"), lab.Select(l => l + 5).ToArray());
        var e = Assert.Throws<DataFormatException>(() => TrainRun.Execute(Config(tmp.File("c.npy"), "c")));
        Assert.Equal(tmp.File("c.labels.npy"), e.FilePath);
        // raw .bin of the wrong size
        File.WriteAllBytes(tmp.File("d.bin"), new byte[784 * 10 + 3]);
        Npy.WriteLabels(tmp.File("d.labels.npy"), lab);
        Assert.Contains(
            "not a multiple",
            Assert.Throws<DataFormatException>(() => TrainRun.Execute(Config(tmp.File("d.bin"), "d"))).Message
        );
        foreach (var name in new[] { "a", "b", "c", "d" })
            Assert.False(Directory.Exists(tmp.File(name)), $"{name}: training started");
    }

    [Fact]
    public void Raw_bin_store_in_the_papers_layout_is_read_as_hwc_images()
    {
        using var tmp = new TempDir();
        var (images, labels) = TestSupport.RandomImages(5, 32, 32, 3, 10, seed: 4);
        File.WriteAllBytes(tmp.File("ddpm.bin"), images);
        Npy.WriteLabels(tmp.File("ddpm.labels.npy"), labels);
        using var store = NpyDataset.Read(
            tmp.File("ddpm.bin"),
            tmp.File("ddpm.labels.npy"),
            CifarReader.Cifar10Classes,
            (32, 32, 3)
        );
        Assert.Equal(images.AsSpan(3 * 3072, 3072).ToArray(), store.Image(3).ToArray());
    }

    [Fact]
    public void Pgd_training_on_fashion_mnist_is_far_more_robust_than_standard_training()
    {
        // End to end on real data at small scale: 2,000 images; PGD-20 at eps 0.1 on 500 test images. A well-trained
        // standard model is near 0% robust (3.4% measured at 91% clean); one trained on 2,000 images for 10 epochs is
        // smoother (about 15%), so the check is on the gap, and on the standard model being clearly broken.
        using var tmp = new TempDir();
        TrainRunConfig Config(TrainMethod method, int epochs, string name) =>
            new()
            {
                TrainSize = 2000,
                EvalSize = 500,
                Method = method,
                Epsilon = 0.1,
                OutputDir = tmp.File(name),
                Options = new TrainOptions
                {
                    Epochs = epochs,
                    BatchSize = 64,
                    LearningRate = 0.05,
                    Seed = 1,
                },
            };
        var standard = TrainRun.Execute(Config(TrainMethod.Standard, 10, "std"));
        // the same Config(TrainMethod.Pgd, 4 epochs), shared
        var (pgdDir, adversarial) = TestSupport.PgdTrainedFashionMnist();
        Assert.True(standard.Last!.Clean > 0.8, $"standard clean {standard.Last.Clean}");
        Assert.True(standard.Last.Robust < 0.3, $"standard model robust accuracy {standard.Last.Robust}");
        Assert.True(
            adversarial.Last!.Robust > standard.Last.Robust + 0.2,
            $"PGD-AT robust accuracy {adversarial.Last.Robust} vs standard {standard.Last.Robust}"
        );
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(pgdDir, "result.json")))!;
        Assert.Equal(adversarial.Last.Robust, json["test"]!["last"]!["robust"]!.GetValue<double>());
    }
}
