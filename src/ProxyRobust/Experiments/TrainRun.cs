using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;

namespace ProxyRobust.Experiments;

/// <summary>What to train on and how; the CLI's 'train' verb and the demo both run through this.</summary>
public sealed record TrainRunConfig
{
    public string Data { get; init; } = DatasetLoader.FashionMnistName;
    public string? Labels { get; init; }
    /// <summary>Evaluation data; default: the test split of <see cref="Data"/>.</summary>
    public string? EvalData { get; init; }
    /// <summary>Use a seeded, class-balanced subset of this many training images.</summary>
    public int? TrainSize { get; init; }
    /// <summary>Evaluate on a seeded, class-balanced subset of this many evaluation images (null: all).</summary>
    public int? EvalSize { get; init; }
    public string Arch { get; init; } = "small-cnn";
    public TrainOptions Options { get; init; } = new();
    public required string OutputDir { get; init; }
    public bool Resume { get; init; }
}

public sealed record TrainRunResult(string OutputDir, ArchSpec Arch, int TrainImages, TrainResult Training)
{
    public double? TestAccuracy => Training.FinalEval?.Accuracy;
}

public static class TrainRun
{
    public static TrainRunResult Execute(TrainRunConfig config, IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        using var fullTrain = DatasetLoader.Load(config.Data, Split.Train, config.Labels);
        using var evalData = config.EvalData is null
            ? (DatasetLoader.HasSplit(config.Data, Split.Test) ? DatasetLoader.Load(config.Data, Split.Test, config.Labels) : null)
            : DatasetLoader.Load(config.EvalData, Split.Test);
        if (evalData is not null && (evalData.Height, evalData.Width, evalData.Channels) != (fullTrain.Height, fullTrain.Width, fullTrain.Channels))
            throw new DataFormatException(evalData.Source,
                $"evaluation images are {evalData.Height}x{evalData.Width}x{evalData.Channels}, training images {fullTrain.Height}x{fullTrain.Width}x{fullTrain.Channels}");
        if (config.TrainSize is { } size && (size < 1 || size > fullTrain.Count))
            throw new ArgumentException($"--train-size {size} is outside 1..{fullTrain.Count}");
        var train = config.TrainSize is { } n && n < fullTrain.Count ? fullTrain.Split(n, config.Options.Seed).Taken : fullTrain;

        var eval = evalData is not null && config.EvalSize is { } m && m < evalData.Count ? evalData.Split(m, config.Options.Seed + 1).Taken : evalData;

        var (mean, std) = DatasetStats.ChannelMeanStd(train);
        var spec = ArchSpec.For(config.Arch, train.Channels, train.Height, train.Width, train.NumClasses, mean, std);
        torch.manual_seed(config.Options.Seed);
        using var model = spec.Create();

        var description = new JsonObject
        {
            ["data"] = config.Data,
            ["trainImages"] = train.Count,
            ["trainSize"] = config.TrainSize,
            ["evalData"] = config.EvalData ?? (evalData is null ? null : config.Data + " (test split)"),
            ["evalImages"] = eval?.Count,
            ["classNames"] = JsonSerializer.SerializeToNode(train.ClassNames),
            ["version"] = typeof(TrainRun).Assembly.GetName().Version?.ToString(),
        };
        var trainer = new Trainer(config.Options, new CrossEntropyObjective(config.Options.LabelSmoothing));
        var result = trainer.Run(model, train, eval, config.OutputDir, config.Resume, progress, cancel, description);

        var summary = description.DeepClone().AsObject();
        summary["arch"] = JsonSerializer.SerializeToNode(spec);
        summary["options"] = JsonSerializer.SerializeToNode(config.Options);
        summary["history"] = JsonSerializer.SerializeToNode(result.History);
        summary["seconds"] = result.Seconds;
        if (result.FinalEval is { } e)
        {
            var (lo, hi) = e.Wilson95;
            summary["test"] = new JsonObject { ["accuracy"] = e.Accuracy, ["correct"] = e.Correct, ["total"] = e.Total, ["wilson95"] = new JsonArray(lo, hi) };
        }
        AtomicFile.WriteAllText(Path.Combine(config.OutputDir, "result.json"), summary.ToJsonString(Checkpoint.Json));
        return new TrainRunResult(config.OutputDir, spec, train.Count, result);
    }
}
