using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class CheckpointTests
{
    public CheckpointTests() => TestSupport.InitTorch();

    [Fact]
    public void Save_and_load_round_trip_every_tensor()
    {
        using var tmp = new TempDir();
        torch.manual_seed(5);
        using var model = ArchSpec.For("wrn-10-1", 1, 12, 12, 4, [0.3f], [0.2f]).Create();
        Assert.True(model.ChannelsLast);
        Checkpoint.Save(tmp.File("ck"), model, null, null, new JsonObject());
        using var loaded = Checkpoint.LoadClassifier(tmp.File("ck.json"));
        Assert.Equal(model.Spec, loaded.Spec);
        var a = model.state_dict();
        foreach (var (name, t) in loaded.state_dict())
            Assert.True(t.eq(a[name]).all().item<bool>(), name);
        // the weights file is plain safetensors that PyBridge (as PyTorch would) loads by name
        var raw = Safetensors.LoadStateDict(tmp.File("ck.safetensors"));
        Assert.Equal(a.Keys.OrderBy(k => k), raw.Keys.OrderBy(k => k));
        // channels-last weights are written in the standard NCHW order, as any other reader expects
        foreach (var (name, t) in raw)
            Assert.True(t.eq(a[name]).all().item<bool>(), name);
    }

    [Fact]
    public void Truncated_or_corrupt_weights_and_mismatched_architecture_are_rejected()
    {
        using var tmp = new TempDir();
        using var model = ArchSpec.For("small-cnn", 1, 28, 28, 10).Create();
        Checkpoint.Save(tmp.File("ck"), model, null, null, new JsonObject());
        var bytes = File.ReadAllBytes(tmp.File("ck.safetensors"));
        File.WriteAllBytes(tmp.File("ck.safetensors"), bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.LoadClassifier(tmp.File("ck")));
        Assert.Contains("truncated or corrupt", e.Message);
        Assert.Contains(tmp.File("ck.safetensors"), e.Message);

        File.WriteAllBytes(tmp.File("ck.safetensors"), bytes);
        var wrong = ArchSpec.For("small-cnn", 1, 28, 28, 7);
        Assert.Contains(
            "does not match",
            Assert.Throws<CheckpointException>(() => Checkpoint.LoadClassifier(tmp.File("ck"), expected: wrong)).Message
        );

        // weights of another architecture under a JSON that claims this one
        using var other = ArchSpec.For("small-cnn", 1, 28, 28, 7).Create();
        Checkpoint.Save(tmp.File("other"), other, null, null, new JsonObject());
        File.Copy(tmp.File("other.safetensors"), tmp.File("ck.safetensors"), overwrite: true);
        var json = JsonNode.Parse(File.ReadAllText(tmp.File("ck.json")))!;
        json["weightsSha256"] = JsonNode.Parse(File.ReadAllText(tmp.File("other.json")))![
            "weightsSha256"
        ]!.GetValue<string>();
        File.WriteAllText(tmp.File("ck.json"), json.ToJsonString());
        Assert.Contains(
            "different architecture",
            Assert.Throws<CheckpointException>(() => Checkpoint.LoadClassifier(tmp.File("ck"))).Message
        );

        File.WriteAllText(tmp.File("ck.json"), "{ not json");
        Assert.Contains(
            "corrupt JSON",
            Assert.Throws<CheckpointException>(() => Checkpoint.LoadClassifier(tmp.File("ck"))).Message
        );
    }

    /// <summary>
    /// Interrupt-and-resume: the run is cancelled after step <paramref name="killAfter"/> (it saves
    /// OUT/last.* at the step it reached), resumes, and must end with the uninterrupted run's weights.
    /// </summary>
    private static void AssertResumeMatches(Func<string, TrainRunConfig> config, int killAfter)
    {
        using var tmp = new TempDir();
        var straight = TrainRun.Execute(config(tmp.File("straight")));

        using var cts = new CancellationTokenSource();
        var stopper = new Reporter<TrainProgress>(p =>
        {
            if (p.Step == killAfter)
                cts.Cancel();
        });
        Assert.ThrowsAny<OperationCanceledException>(() =>
            TrainRun.Execute(config(tmp.File("resumed")), stopper, cts.Token)
        );
        Assert.False(File.Exists(tmp.File("resumed/final.json")));
        var resumed = TrainRun.Execute(config(tmp.File("resumed")) with { Resume = true });

        var a = Safetensors.LoadStateDict(tmp.File("straight/final.safetensors"));
        var b = Safetensors.LoadStateDict(tmp.File("resumed/final.safetensors"));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a)
        {
            double diff = t.is_floating_point()
                ? (t - b[name]).abs().max().item<float>()
                : (t - b[name]).abs().max().item<long>();
            Assert.True(diff <= 1e-5, $"{name}: max difference {diff}");
        }
        Assert.Equal(straight.Training.History.Count, resumed.Training.History.Count);
        Assert.Equal(straight.TestAccuracy, resumed.TestAccuracy);
    }

    [Fact]
    public void Killed_small_cnn_run_resumes_to_the_same_weights_on_fashion_mnist()
    {
        AssertResumeMatches(
            dir => new TrainRunConfig
            {
                TrainSize = 512,
                EvalSize = 500,
                Arch = "small-cnn",
                OutputDir = dir,
                Options = new TrainOptions
                {
                    Epochs = 2,
                    BatchSize = 64,
                    LearningRate = 0.05,
                    EmaDecay = 0.9,
                    CheckpointEverySteps = 3,
                    Seed = 11,
                    Augment = new AugmentOptions(2, false),
                },
            },
            killAfter: 11
        );
    }

    [Fact]
    public void Killed_port_run_with_validation_resumes_to_the_same_weights()
    {
        // PGD-AT with proxy images in every batch, a validation split and EMA: every piece of state must come back.
        AssertResumeMatches(
            dir => new TrainRunConfig
            {
                TrainSize = 200,
                ValSize = 64,
                EvalSize = 64,
                Method = TrainMethod.Pgd,
                AttackSteps = 3,
                Synthetic = "holdout:500",
                SyntheticBatch = 32,
                Gamma = 0.3,
                OutputDir = dir,
                Options = new TrainOptions
                {
                    Epochs = 3,
                    BatchSize = 64,
                    LearningRate = 0.05,
                    EmaDecay = 0.9,
                    CheckpointEverySteps = 5,
                    Seed = 21,
                },
            },
            killAfter: 8
        );
    }

    [Fact]
    public void Resuming_with_other_proxy_settings_is_refused_and_leaves_the_checkpoint_alone()
    {
        using var tmp = new TempDir();
        TrainRunConfig Config() =>
            new()
            {
                TrainSize = 128,
                EvalSize = 32,
                Synthetic = "holdout:256",
                Gamma = 0.5,
                OutputDir = tmp.File("run"),
                Options = new TrainOptions
                {
                    Epochs = 2,
                    BatchSize = 64,
                    CheckpointEverySteps = 1,
                    Seed = 3,
                },
            };
        using var cts = new CancellationTokenSource();
        var stopper = new Reporter<TrainProgress>(p =>
        {
            if (p.Step == 2)
                cts.Cancel();
        });
        Assert.ThrowsAny<OperationCanceledException>(() => TrainRun.Execute(Config(), stopper, cts.Token));
        var before = File.ReadAllBytes(tmp.File("run/last.safetensors"));

        var e = Assert.Throws<CheckpointException>(() =>
            TrainRun.Execute(Config() with { Gamma = 0.3, Synthetic = "holdout:512", Resume = true })
        );
        Assert.Contains("last.json", e.Message);
        Assert.Contains("gamma 0.5 -> 0.3", e.Message);
        Assert.Contains("synthetic \"holdout:256\" -> \"holdout:512\"", e.Message);
        Assert.Equal(before, File.ReadAllBytes(tmp.File("run/last.safetensors")));
        // the same settings (and a different attack chunking, which gives the same result) resume
        Assert.Equal(2, TrainRun.Execute(Config() with { Resume = true, AttackChunk = 16 }).Training.History.Count);
    }

    [Theory]
    [InlineData("wrn-16-4", false)]
    [InlineData("wrn-16-4", true)]
    [InlineData("preact-resnet18", false)]
    [InlineData("preact-resnet18", true)]
    public void Killed_resnet_runs_resume_to_the_same_weights_on_fashion_mnist_and_on_a_cifar_file(
        string arch,
        bool cifar
    )
    {
        using var data = new TempDir();
        string source = DatasetLoader.FashionMnistName;
        if (cifar)
        {
            var (images, labels) = TestSupport.RandomImages(40, 32, 32, 3, 10, seed: 13);
            CifarReader.Write(data.File("data_batch_1.bin"), images, labels);
            CifarReader.Write(data.File("test_batch.bin"), images[..(3072 * 8)], labels[..8]);
            source = data.Path;
        }
        AssertResumeMatches(
            dir => new TrainRunConfig
            {
                Data = source,
                TrainSize = cifar ? null : 40,
                EvalSize = 16,
                Arch = arch,
                OutputDir = dir,
                Options = new TrainOptions
                {
                    Epochs = 2,
                    BatchSize = 16,
                    LearningRate = 0.05,
                    CheckpointEverySteps = 2,
                    Seed = 14,
                    Augment = cifar ? new AugmentOptions(4, true) : AugmentOptions.None,
                },
            },
            killAfter: 5
        );
    }
}
