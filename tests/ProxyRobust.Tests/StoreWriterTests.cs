using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Generative;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class StoreWriterTests
{
    public StoreWriterTests() => TestSupport.InitTorch();

    private static readonly JsonObject Generator = new() { ["kind"] = "test", ["id"] = 1 };

    /// <summary>A stand-in generator: images that depend on the labels and on the random stream, as a real one's
    /// do.</summary>
    private static Tensor FakeSource(Tensor labels, torch.Generator g) =>
        (
            rand([labels.shape[0], 1, 6, 5], generator: g) * 0.5 + labels.view(-1, 1, 1, 1).to(ScalarType.Float32) / 20
        ).clamp(0, 1);

    private static StorePlan Plan(int shard = 0, int shards = 1) =>
        new(
            Count: 2_350,
            NumClasses: 10,
            Height: 6,
            Width: 5,
            Channels: 1,
            ChunkSize: 200,
            Seed: 3,
            ShardIndex: shard,
            ShardCount: shards
        );

    [Fact]
    public void Three_shards_merge_into_the_single_process_store_byte_for_byte()
    {
        using var dir = new TempDir();
        var single = dir.File("single.npy");
        var (_, complete) = StoreWriter.Fill(single, Plan(), Generator, FakeSource, batchSize: 64);
        Assert.True(complete);
        var sharded = dir.File("sharded.npy");
        // the shards with different batch sizes, as different machines might use
        Assert.False(StoreWriter.Fill(sharded, Plan(2, 3), Generator, FakeSource, batchSize: 50).Complete);
        Assert.False(StoreWriter.Fill(sharded, Plan(0, 3), Generator, FakeSource, batchSize: 200).Complete);
        Assert.True(StoreWriter.Fill(sharded, Plan(1, 3), Generator, FakeSource, batchSize: 7).Complete);
        Assert.Equal(File.ReadAllBytes(single), File.ReadAllBytes(sharded));
        Assert.Equal(
            File.ReadAllBytes(StoreWriter.LabelsPath(single)),
            File.ReadAllBytes(StoreWriter.LabelsPath(sharded))
        );
        // and the store reads back as a data set: class-balanced labels, the right shape
        using var data = NpyDataset.Read(single, StoreWriter.LabelsPath(single));
        Assert.Equal(2_350, data.Count);
        Assert.Equal((6, 5, 1), (data.Height, data.Width, data.Channels));
        Assert.All(Enumerable.Range(0, 10), c => Assert.Equal(235, data.Labels.Count(l => l == c)));
    }

    [Fact]
    public void A_killed_fill_resumes_without_duplicates_or_holes()
    {
        using var dir = new TempDir();
        var reference = dir.File("reference.npy");
        StoreWriter.Fill(reference, Plan(), Generator, FakeSource, batchSize: 64);
        var store = dir.File("killed.npy");
        int calls = 0;
        Tensor Dying(Tensor labels, torch.Generator g) =>
            ++calls == 9 ? throw new OperationCanceledException("killed") : FakeSource(labels, g);
        Assert.Throws<OperationCanceledException>(() =>
            StoreWriter.Fill(store, Plan(), Generator, Dying, batchSize: 64)
        );
        // killed in its 9th batch of 64 (the 3rd chunk of 200): two whole chunks are there, nothing half-written
        Assert.Equal(2, Directory.GetFiles(StoreWriter.PartsDir(store), "chunk-*.npy").Length);
        Assert.False(File.Exists(store));
        var (written, complete) = StoreWriter.Fill(store, Plan(), Generator, FakeSource, batchSize: 64);
        Assert.Equal(10, written); // 12 chunks in all
        Assert.True(complete);
        Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(store));
        // running again changes nothing
        Assert.Equal(0, StoreWriter.Fill(store, Plan(), Generator, FakeSource, batchSize: 64).Written);
        Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(store));
    }

    [Fact]
    public void A_fill_with_another_plan_is_refused_naming_the_plan_file()
    {
        using var dir = new TempDir();
        var store = dir.File("s.npy");
        StoreWriter.Fill(store, Plan() with { Count = 300 }, Generator, FakeSource, batchSize: 64);
        var e = Assert.Throws<DataFormatException>(() =>
            StoreWriter.Fill(store, Plan() with { Count = 300, Seed = 4 }, Generator, FakeSource, batchSize: 64)
        );
        Assert.Contains("plan.json", e.Message);
        Assert.Throws<ArgumentException>(() => StoreWriter.Fill(store, Plan(3, 3), Generator, FakeSource, 64));
    }
}

public sealed class GeneratorCliTests
{
    [Fact]
    public void Generator_train_and_sample_through_the_cli_on_fashion_mnist()
    {
        // End to end on real data at a tiny scale: a DDPM and a GAN trained a few steps on 256 Fashion-MNIST images, a
        // store sampled from each in two shards, and one clear error for a corrupt checkpoint.
        using var tmp = new TempDir();
        string[] tiny =
        [
            "--train-size",
            "256",
            "--steps",
            "6",
            "--batch-size",
            "32",
            "--grid-every",
            "0",
            "--threads",
            "2",
        ];
        var ddpm = TestSupport.RunCli([
            "generator",
            "train",
            "--kind",
            "ddpm",
            "--base-channels",
            "8",
            "--channel-mults",
            "1,2",
            "--res-blocks",
            "1",
            "--diffusion-steps",
            "50",
            "--out",
            tmp.File("ddpm"),
            .. tiny,
        ]);
        Assert.True(ddpm.Code == 0, ddpm.Err);
        Assert.True(File.Exists(Path.Combine(tmp.File("ddpm"), "final.json")));
        Assert.Single(Directory.GetFiles(tmp.File("ddpm"), "samples-*.png"));
        var gan = TestSupport.RunCli([
            "generator",
            "train",
            "--kind",
            "gan",
            "--gan-width",
            "8",
            "--latent-dim",
            "16",
            "--out",
            tmp.File("gan"),
            .. tiny,
        ]);
        Assert.True(gan.Code == 0, gan.Err);
        foreach (var (model, extra) in new[] { ("ddpm", new[] { "--steps", "3" }), ("gan", Array.Empty<string>()) })
        {
            var store = tmp.File($"{model}.npy");
            foreach (var shard in new[] { "1/2", "0/2" })
            {
                var r = TestSupport.RunCli([
                    "generator",
                    "sample",
                    "--checkpoint",
                    tmp.File(model),
                    "--out",
                    store,
                    "--n",
                    "30",
                    "--chunk-size",
                    "10",
                    "--shard",
                    shard,
                    "--threads",
                    "2",
                    .. extra,
                ]);
                Assert.True(r.Code == 0, r.Err);
            }
            using var data = ProxyRobust.Data.NpyDataset.Read(store, StoreWriter.LabelsPath(store));
            Assert.Equal(30, data.Count);
            Assert.Equal((28, 28, 1), (data.Height, data.Width, data.Channels));
            Assert.All(Enumerable.Range(0, 10), c => Assert.Equal(3, data.Labels.Count(l => l == c)));
            // Packed (sampling weights only) it is far smaller and samples the same images up to the weights'
            // rounding: a mean difference of a fraction of one grey level per pixel (measured on the tiny GAN: 0.007 in
            // float16, 0.06 in int8).
            long full = new FileInfo(Path.Combine(tmp.File(model), "final.safetensors")).Length;
            foreach (
                var (precision, shrink, levels) in new[]
                {
                    ("float16", model == "ddpm" ? 6 : 2, 0.5),
                    ("int8", model == "ddpm" ? 10 : 3, 1.0),
                }
            )
            {
                var packed = tmp.File($"{model}-{precision}");
                var pack = TestSupport.RunCli([
                    "generator",
                    "pack",
                    "--checkpoint",
                    tmp.File(model),
                    "--out",
                    packed,
                    "--precision",
                    precision,
                ]);
                Assert.True(pack.Code == 0, pack.Err);
                long small = new FileInfo(packed + ".safetensors").Length;
                Assert.True(small * shrink < full, $"{precision}: packed {small} bytes against {full}");
                var again = tmp.File($"{model}-from-{precision}.npy");
                var r2 = TestSupport.RunCli([
                    "generator",
                    "sample",
                    "--checkpoint",
                    packed + ".json",
                    "--out",
                    again,
                    "--n",
                    "30",
                    "--chunk-size",
                    "10",
                    "--threads",
                    "2",
                    .. extra,
                ]);
                Assert.True(r2.Code == 0, r2.Err);
                using var fromPacked = ProxyRobust.Data.NpyDataset.Read(again, StoreWriter.LabelsPath(again));
                Assert.Equal(data.Labels, fromPacked.Labels);
                double diff = 0;
                for (int i = 0; i < 30; i++)
                    diff += data.Image(i)
                        .ToArray()
                        .Zip(fromPacked.Image(i).ToArray(), (a, b) => Math.Abs(a - b))
                        .Average();
                Console.WriteLine(
                    $"{model} {precision}: {small} of {full} bytes, mean pixel difference {diff / 30:F3}"
                );
                Assert.True(
                    diff / 30 < levels,
                    $"{model} {precision}: mean pixel difference {diff / 30:F3} grey levels"
                );
            }
        }
        var rawOfPacked = TestSupport.RunCli([
            "generator",
            "sample",
            "--checkpoint",
            tmp.File("ddpm-float16"),
            "--raw-weights",
            "--out",
            tmp.File("raw.npy"),
            "--n",
            "10",
        ]);
        Assert.Equal(1, rawOfPacked.Code);
        Assert.Contains("packed", rawOfPacked.Err);
        File.WriteAllText(Path.Combine(tmp.File("gan"), "final.safetensors"), "not tensors");
        var bad = TestSupport.RunCli([
            "generator",
            "sample",
            "--checkpoint",
            tmp.File("gan"),
            "--out",
            tmp.File("x.npy"),
            "--n",
            "10",
        ]);
        Assert.Equal(1, bad.Code);
        Assert.Contains("final.safetensors", bad.Err);
        Assert.Single(bad.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var usage = TestSupport.RunCli([
            "generator",
            "sample",
            "--checkpoint",
            tmp.File("gan"),
            "--out",
            "y.npy",
            "--shard",
            "2/2",
        ]);
        Assert.Equal(2, usage.Code);
        Assert.Contains("--shard", usage.Err);
    }
}
