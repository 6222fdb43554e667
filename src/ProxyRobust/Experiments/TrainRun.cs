using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ProxyRobust.Attacks;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;

namespace ProxyRobust.Experiments;

public enum TrainMethod
{
    Standard,
    Pgd,
    Trades,
    Fgsm,
    Gaussian,
}

/// <summary>What to train on and how; the CLI's 'train' verb, the demo and the experiments all run through
/// this.</summary>
public sealed record TrainRunConfig
{
    public string Data { get; init; } = DatasetLoader.FashionMnistName;
    public string? Labels { get; init; }

    /// <summary>The number of classes when the data files do not name them (IDX, .npy); null: 0..the largest label, all
    /// present.</summary>
    public int? Classes { get; init; }

    /// <summary>Evaluation data; default: the test split of <see cref="Data"/>.</summary>
    public string? EvalData { get; init; }

    /// <summary>Use a seeded, class-balanced subset of this many training images.</summary>
    public int? TrainSize { get; init; }

    /// <summary>Hold out this many real training images (class-balanced) for validation after every epoch; the best
    /// epoch is kept.</summary>
    public int ValSize { get; init; }

    /// <summary>Evaluate on a seeded, class-balanced subset of this many evaluation images (null: all).</summary>
    public int? EvalSize { get; init; }

    /// <summary>Seed of the data subsets (train, validation, hold-out), separate from the training seed.</summary>
    public int DataSeed { get; init; }
    public string Arch { get; init; } = "small-cnn";
    public TrainMethod Method { get; init; } = TrainMethod.Standard;
    public Norm Norm { get; init; } = Norm.Linf;

    /// <summary>Perturbation budget; null: 0.1 (l-inf) / 1.5 (l-2) for 28x28 gray images, 8/255 / 0.5 otherwise (the
    /// paper's CIFAR-10 values).</summary>
    public double? Epsilon { get; init; }
    public int AttackSteps { get; init; } = 10;

    /// <summary>Attack at most this many examples at a time during training (0: whole batch); see
    /// bench/RESULTS.md.</summary>
    public int AttackChunk { get; init; }

    /// <summary>Attack step size; null: eps / 4 (2/255 at 8/255, as in the paper's code).</summary>
    public double? StepSize { get; init; }
    public double Beta { get; init; } = 6.0;
    public double Sigma { get; init; } = 0.25;

    /// <summary>Proxy data: an images .npy / raw .bin (labels beside it or in <see cref="SyntheticLabels"/>), or
    /// "holdout:N" for N held-out real images.</summary>
    public string? Synthetic { get; init; }
    public string? SyntheticLabels { get; init; }

    /// <summary>Per-sample sampling scores (float32 .npy) for the synthetic store: images are drawn proportionally to
    /// them.</summary>
    public string? SyntheticScores { get; init; }

    /// <summary>How the scores become sampling weights (<see cref="Proxy.SampleSelection"/>: proportional, top:F,
    /// temperature:T); null: proportional.</summary>
    public string? SyntheticSelection { get; init; }

    /// <summary>Synthetic images per batch; null: as many as real ones (the paper's equal halves).</summary>
    public int? SyntheticBatch { get; init; }

    /// <summary>Weight of the synthetic part of the loss: (1 - gamma) * real + gamma * synthetic.</summary>
    public double Gamma { get; init; } = 0.5;
    public int ValAttackSteps { get; init; } = 10;

    /// <summary>Attack of the per-epoch validation of adversarial training: "pgd" (PGD with ValAttackSteps) or
    /// "fast" (AutoAttack fast: APGD-CE, then MALT-targeted APGD-T; slower, closer to the final number).</summary>
    public string ValAttack { get; init; } = "pgd";
    public int TestAttackSteps { get; init; } = 20;
    public int TestAttackRestarts { get; init; } = 1;

    /// <summary>Recorded on its own (under "options" in checkpoints and results), so not part of this record's
    /// JSON.</summary>
    [JsonIgnore]
    public TrainOptions Options { get; init; } = new();
    public required string OutputDir { get; init; }
    public bool Resume { get; init; }

    [JsonIgnore]
    public bool Adversarial => Method is TrainMethod.Pgd or TrainMethod.Trades or TrainMethod.Fgsm;
}

public sealed record TrainRunResult(
    string OutputDir,
    ArchSpec Arch,
    int TrainImages,
    int SyntheticImages,
    TrainResult Training,
    TestMetrics? Last,
    TestMetrics? Best
)
{
    public double? TestAccuracy => Last?.Clean;
}

public static class TrainRun
{
    public static ThreatModel Threat(TrainRunConfig c, ImageDataset data)
    {
        bool smallGray = data.Channels == 1 && data.Height <= 28;
        double eps = c.Epsilon ?? (c.Norm == Norm.Linf ? (smallGray ? 0.1 : 8.0 / 255) : (smallGray ? 1.5 : 0.5));
        return new ThreatModel(c.Norm, eps);
    }

    public static ITrainingObjective Objective(TrainRunConfig c, ThreatModel threat)
    {
        double step = c.StepSize ?? threat.Epsilon / 4;
        return c.Method switch
        {
            TrainMethod.Standard => new CrossEntropyObjective(c.Options.LabelSmoothing),
            TrainMethod.Pgd => new AdversarialObjective(
                new Pgd(threat, c.AttackSteps, step, KeepFirstSuccess: false) { Chunk = c.AttackChunk },
                $"pgd-at ({threat}, {c.AttackSteps} steps)",
                c.Options.LabelSmoothing
            ),
            TrainMethod.Fgsm => new AdversarialObjective(
                new Fgsm(threat, RandomStart: true),
                $"fgsm-rs ({threat})",
                c.Options.LabelSmoothing
            ),
            TrainMethod.Trades => new TradesObjective(threat, c.AttackSteps, step, c.Beta),
            TrainMethod.Gaussian => new GaussianNoiseObjective(c.Sigma),
            _ => throw new ArgumentOutOfRangeException(nameof(c)),
        };
    }

    /// <summary>Settings a resumed run may change: where it writes, that it resumes, and attack chunking (same
    /// result).</summary>
    /// <summary>
    /// The real training images' split, as every classifier run makes it: a class-balanced validation set of
    /// <paramref name="valSize"/> images first, then the training subset of <paramref name="trainSize"/> (null: the
    /// rest), then the unused rest (the hold-out proxy). A generator trained on the same arguments sees exactly the
    /// classifier's training images.
    /// </summary>
    public static (ImageDataset? Val, ImageDataset Train, ImageDataset Unused) RealSplits(
        ImageDataset fullTrain,
        int valSize,
        int? trainSize,
        int dataSeed
    )
    {
        var pool = fullTrain;
        ImageDataset? val = null;
        if (valSize > 0)
        {
            if (valSize >= fullTrain.Count)
                throw new ArgumentException($"a validation set of {valSize} images leaves no training images");
            (val, pool) = fullTrain.Split(valSize, Seeds.Derive(dataSeed, 1));
        }
        if (trainSize is { } size && (size < 1 || size > pool.Count))
            throw new ArgumentException($"a training subset of {size} images is outside 1..{pool.Count}");
        var (train, unused) =
            trainSize is { } n && n < pool.Count ? pool.Split(n, Seeds.Derive(dataSeed, 2)) : (pool, pool.Select([]));
        return (val, train, unused);
    }

    /// <summary>The held-out real proxy "holdout:COUNT": COUNT of the images <see cref="RealSplits"/> left unused,
    /// drawn by the data seed.</summary>
    public static ImageDataset HeldOutProxy(ImageDataset unused, int count, int dataSeed) =>
        unused.Split(count, Seeds.Derive(dataSeed, 4)).Taken;

    private static readonly string[] FreeOnResume =
    [
        nameof(TrainRunConfig.OutputDir),
        nameof(TrainRunConfig.Resume),
        nameof(TrainRunConfig.AttackChunk),
    ];

    /// <summary>
    /// Refuses to resume OUT/last.* under a different data, model, method or proxy configuration than the one
    /// that wrote it (the trainer itself checks the training options): the result would belong to neither run.
    /// </summary>
    private static void CheckResumesSameRun(string outputDir, TrainRunConfig config)
    {
        var last = Path.Combine(outputDir, "last");
        if (!File.Exists(Checkpoint.JsonPath(last)))
            return;
        if (Checkpoint.ReadRun(last)["config"] is not JsonObject savedNode)
            return; // written by the plain trainer (tests)
        // Through the typed record, so that a checkpoint written before the JSON naming convention compares too.
        var saved = JsonFiles.ToNode(JsonFiles.FromNode<TrainRunConfig>(savedNode))!.AsObject();
        var current = JsonFiles.ToNode(config)!.AsObject();
        var differing = current
            .Select(kv => kv.Key)
            .Union(saved.Select(kv => kv.Key))
            .Where(key =>
                !FreeOnResume.Contains(key, StringComparer.OrdinalIgnoreCase)
                && !JsonNode.DeepEquals(current[key], saved[key])
            )
            .Select(key => $"{key} {saved[key]?.ToJsonString() ?? "null"} -> {current[key]?.ToJsonString() ?? "null"}")
            .ToList();
        if (differing.Count > 0)
            throw new CheckpointException(
                Checkpoint.JsonPath(last),
                $"was written by a run with other settings ({string.Join(", ", differing)}); resume with the same "
                    + $"settings or start a new output folder"
            );
    }

    /// <param name="phases">progress of the final test evaluations (last and best epoch), which can take minutes for a
    /// ResNet on a full test set</param>
    public static TrainRunResult Execute(
        TrainRunConfig config,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default,
        IProgress<(string Phase, int Done, int Total)>? phases = null,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        using var fullTrain = DatasetLoader.Load(config.Data, Split.Train, config.Labels, config.Classes);
        using var evalData =
            config.EvalData is not null ? DatasetLoader.Load(config.EvalData, Split.Test, classes: fullTrain.NumClasses)
            : DatasetLoader.HasSplit(config.Data, Split.Test)
                ? DatasetLoader.Load(config.Data, Split.Test, config.Labels, fullTrain.NumClasses)
            : null;
        if (
            evalData is not null
            && (evalData.Height, evalData.Width, evalData.Channels)
                != (fullTrain.Height, fullTrain.Width, fullTrain.Channels)
        )
            throw new DataFormatException(
                evalData.Source,
                $"evaluation images are {evalData.Height}x{evalData.Width}x{evalData.Channels}, training images "
                    + $"{fullTrain.Height}x{fullTrain.Width}x{fullTrain.Channels}"
            );

        // Real data: validation split first, then the training subset, then (optionally) a hold-out used as an ideal
        // proxy.
        var (val, train, unused) = RealSplits(fullTrain, config.ValSize, config.TrainSize, config.DataSeed);
        using var synthetic = OpenSynthetic(config, train, unused);
        var eval =
            evalData is not null && config.EvalSize is { } m && m < evalData.Count
                ? evalData.Split(m, Seeds.Derive(config.DataSeed, 3)).Taken
                : evalData;

        var (mean, std) = DatasetStats.ChannelMeanStd(train);
        var spec = ArchSpec.For(config.Arch, train.Channels, train.Height, train.Width, train.NumClasses, mean, std);
        torch.manual_seed(config.Options.Seed);
        using var model = spec.Create();
        var threat = Threat(config, train);
        var device = torch.device(config.Options.Device);
        double step = config.StepSize ?? threat.Epsilon / 4;
        IAttack? valAttack =
            !config.Adversarial ? null
            : config.ValAttack == "fast" ? new AutoAttack(threat, AutoAttackVersion.Fast).AsAttack(train.NumClasses)
            : new Pgd(threat, config.ValAttackSteps, step);
        // Robust test accuracy for adversarial training, and for any method when a budget is given explicitly.
        IAttack? testAttack =
            config.Adversarial || config.Epsilon is not null
                ? new Pgd(
                    threat,
                    config.TestAttackSteps,
                    Pgd.DefaultStepSize(threat.Epsilon, config.TestAttackSteps),
                    config.TestAttackRestarts
                )
                : null;

        if (config.Resume)
            CheckResumesSameRun(config.OutputDir, config);
        var description = new RunDescription(
            config,
            config.Method.ToString().ToLowerInvariant(),
            config.Adversarial ? threat.ToString() : null,
            train.Count,
            val?.Count,
            synthetic?.Count,
            eval?.Count,
            train.ClassNames,
            typeof(TrainRun).Assembly.GetName().Version?.ToString()
        );
        Func<Classifier, Validation>? validate = val is null
            ? null
            : m =>
            {
                var r = RobustEvaluation.Evaluate(m, val, valAttack, 256, device, seed: 7, cancel: cancel);
                return new Validation(r.Clean.Accuracy, r.Robust?.Accuracy);
            };
        var mix = synthetic is null
            ? null
            : new SyntheticMix(
                new SyntheticStream(
                    synthetic,
                    config.SyntheticBatch ?? config.Options.BatchSize,
                    config.Options.Augment,
                    Seeds.Derive(config.Options.Seed, 0x5E),
                    ReadScores(config, synthetic.Count)
                ),
                config.Gamma
            );
        var trainer = new Trainer(config.Options, Objective(config, threat));
        var result = trainer.Run(
            model,
            train,
            config.OutputDir,
            config.Resume,
            progress,
            cancel,
            JsonFiles.ToNode(description)!.AsObject(),
            validate,
            mix,
            job
        );
        if (!job.IsRoot) // rank 0 tests and writes result.json
            return new TrainRunResult(config.OutputDir, spec, train.Count, synthetic?.Count ?? 0, result, null, null);

        TestMetrics? Test(string name, int? epoch)
        {
            if (eval is null || !File.Exists(Checkpoint.JsonPath(Path.Combine(config.OutputDir, name))))
                return null;
            using var weights = Checkpoint.LoadClassifier(
                Path.Combine(config.OutputDir, name),
                preferEma: config.Options.EmaDecay is not null
            );
            weights.to(device);
            var r = RobustEvaluation.Evaluate(
                weights,
                eval,
                testAttack,
                256,
                device,
                seed: 11,
                progress: phases.Phase(
                    $"test ({name}{(testAttack is null ? "" : $", {testAttack.Name.Split(' ')[0]}")})"
                ),
                cancel: cancel
            );
            return new TestMetrics(
                name,
                epoch,
                r.Clean.Total,
                r.Clean.Accuracy,
                [r.Clean.Wilson95.Low, r.Clean.Wilson95.High],
                r.Robust?.Accuracy,
                r.Robust is { } ra ? [ra.Wilson95.Low, ra.Wilson95.High] : null,
                r.AttackName
            );
        }
        var last = Test("final", result.History.Count);
        var best = result.BestEpoch is null ? null : Test("best", result.BestEpoch);

        JsonFiles.Write(
            Path.Combine(config.OutputDir, TrainRunRecord.FileName),
            TrainRunRecord.Of(
                description,
                spec,
                config.Options,
                result.History,
                result.Seconds,
                new TestResults(last, best),
                result.Parallel
            )
        );
        return new TrainRunResult(config.OutputDir, spec, train.Count, synthetic?.Count ?? 0, result, last, best);
    }

    /// <summary>The proxy images' sampling weights: from --synthetic-scores by the selection, or for random:F a
    /// random subset drawn by the data and training seeds (so that seeds also average over subsets); null:
    /// uniform.</summary>
    private static float[]? ReadScores(TrainRunConfig c, int count)
    {
        var selection = c.SyntheticSelection is null ? null : Proxy.SampleSelection.Parse(c.SyntheticSelection);
        if (selection?.Kind == Proxy.SelectionKind.Random)
        {
            if (c.SyntheticScores is not null)
                throw new ArgumentException($"{selection} draws a random subset: it takes no --synthetic-scores");
            return Proxy.AdaptiveSampling.RandomFraction(
                count,
                selection.Value,
                Seeds.Derive(c.DataSeed, c.Options.Seed, 0x5A)
            );
        }
        if (c.SyntheticScores is null)
        {
            if (selection is not null)
                throw new ArgumentException("a sample selection needs --synthetic-scores");
            return null;
        }
        var scores = Npy.ReadFloats(c.SyntheticScores);
        try
        {
            return Proxy.AdaptiveSampling.Weights(scores, selection ?? Proxy.SampleSelection.Proportional);
        }
        catch (ArgumentException e)
        {
            throw new DataFormatException(c.SyntheticScores, e.Message);
        }
    }

    /// <summary>Opens the proxy data and checks it against the real data before any training starts.</summary>
    private static ImageDataset? OpenSynthetic(TrainRunConfig c, ImageDataset real, ImageDataset unusedReal)
    {
        if (c.Synthetic is null)
            return null;
        if (c.Synthetic.StartsWith("holdout:", StringComparison.OrdinalIgnoreCase))
        {
            if (!int.TryParse(c.Synthetic["holdout:".Length..], out int count) || count < 1)
                throw new ArgumentException($"synthetic source '{c.Synthetic}': expected holdout:N with N > 0");
            if (count > unusedReal.Count)
                throw new ArgumentException(
                    $"synthetic source '{c.Synthetic}': only {unusedReal.Count} real training images are not used "
                        + $"for training or validation"
                );
            return HeldOutProxy(unusedReal, count, c.DataSeed);
        }
        var labels =
            c.SyntheticLabels
            ?? DatasetLoader.FindLabelsFor(c.Synthetic)
            ?? throw new DataFormatException(
                c.Synthetic,
                "no labels for the synthetic images (expected NAME.labels.npy beside them): give their labels file, "
                    + "or pseudo-label them"
            );
        var store = NpyDataset.Read(c.Synthetic, labels, real.ClassNames, (real.Height, real.Width, real.Channels));
        if ((store.Height, store.Width, store.Channels) != (real.Height, real.Width, real.Channels))
        {
            store.Dispose();
            throw new DataFormatException(
                c.Synthetic,
                $"synthetic images are {store.Height}x{store.Width}x{store.Channels}, the real ones "
                    + $"{real.Height}x{real.Width}x{real.Channels}"
            );
        }
        return store;
    }
}
