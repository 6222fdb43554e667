using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Generative;
using ProxyRobust.Models;
using ProxyRobust.Reporting;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Experiments;

// `generator train` and `generator sample`: a generator trained on real images, and a synthetic store filled from it.

public enum GeneratorKind
{
    Ddpm,
    Gan,
}

public sealed record GeneratorTrainRequest
{
    public GeneratorKind Kind { get; init; } = GeneratorKind.Ddpm;
    public string? Data { get; init; }
    public int? Classes { get; init; }

    /// <summary>The real images: the split a classifier run with the same three values trains on (<see
    /// cref="TrainRun.RealSplits"/>), so that a generator sees exactly the classifier's images; null: all of
    /// them.</summary>
    public int? TrainSize { get; init; }
    public int ValSize { get; init; }
    public int DataSeed { get; init; }
    public required string OutputDir { get; init; }
    public bool Resume { get; init; }
    public int BaseChannels { get; init; } = 32;
    public int[] ChannelMults { get; init; } = [1, 2, 2];
    public int ResBlocks { get; init; } = 2;
    public int[] AttentionResolutions { get; init; } = [];
    public double Dropout { get; init; } = 0.1;
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Cosine;
    public int DiffusionSteps { get; init; } = 1000;
    public Prediction Prediction { get; init; } = Prediction.Epsilon;
    public double LabelDropout { get; init; } = 0.1;
    public DdpmTrainOptions Options { get; init; } = new();

    /// <summary>The GAN's size and training (with <see cref="Kind"/> = Gan; the seed and device come from <see
    /// cref="Options"/>).</summary>
    public int LatentDim { get; init; } = 128;
    public int GanWidth { get; init; } = 64;
    public GanTrainOptions GanOptions { get; init; } = new();

    /// <summary>How the sample grids are drawn (DDIM, 25 steps, 10 per class, guidance 1).</summary>
    public SamplerOptions GridSampler { get; init; } = new(SamplerKind.Ddim, 25);
}

public sealed record GeneratorTrainOutcome(
    string OutputDir,
    string Spec,
    long Parameters,
    long Steps,
    double Seconds,
    double FinalLoss,
    string Grid
);

public static class GeneratorTrainRun
{
    public static GeneratorTrainOutcome Execute(
        GeneratorTrainRequest r,
        IProgress<GeneratorProgress>? progress = null,
        CancellationToken cancel = default
    )
    {
        using var all = DatasetLoader.Load(r.Data, Split.Train, classes: r.Classes);
        var (_, data, _) = TrainRun.RealSplits(all, r.ValSize, r.TrainSize, r.DataSeed);
        Directory.CreateDirectory(r.OutputDir);
        string lastGrid = "";
        string GridPath(long step) => lastGrid = Path.Combine(r.OutputDir, $"samples-{step:D7}.png");
        string description;
        long parameters;
        if (r.Kind == GeneratorKind.Gan)
        {
            var ganSpec = new GanSpec(data.Channels, data.Height, data.Width, data.NumClasses, r.LatentDim, r.GanWidth);
            var options = r.GanOptions with { Seed = r.Options.Seed, Device = r.Options.Device };
            using var gan = GanTraining.Run(
                ganSpec,
                options,
                data,
                r.OutputDir,
                r.Resume,
                progress,
                (step, g) =>
                    WriteGrid(
                        labels => g.Sample(labels, NewGridGenerator(r.Options.Seed)),
                        ganSpec.NumClasses,
                        data,
                        GridPath(step)
                    ),
                cancel
            );
            description = ganSpec.ToString();
            parameters = gan.Generator.parameters().Sum(p => p.numel());
        }
        else
        {
            var spec = new DdpmSpec(
                new UNetSpec(
                    data.Channels,
                    data.Height,
                    data.Width,
                    data.NumClasses,
                    r.BaseChannels,
                    r.ChannelMults,
                    r.ResBlocks,
                    r.AttentionResolutions,
                    r.Dropout
                ),
                r.Schedule,
                r.DiffusionSteps,
                r.Prediction,
                r.LabelDropout
            );
            using var ema = DdpmTraining.Run(
                spec,
                r.Options,
                data,
                r.OutputDir,
                r.Resume,
                progress,
                (step, m) =>
                    WriteGrid(
                        labels => m.Sample(labels, r.GridSampler, generator: NewGridGenerator(r.Options.Seed)),
                        spec.Net.NumClasses,
                        data,
                        GridPath(step)
                    ),
                cancel
            );
            description = spec.Net.ToString();
            parameters = ema.Net.ParameterCount();
        }
        var run = GeneratorCheckpoint.ReadRun(Path.Combine(r.OutputDir, "final"));
        var history = run["history"]?.AsArray();
        double finalLoss = history is { Count: > 0 }
            ? (history[^1]!["loss"] ?? history[^1]!["discriminatorLoss"])!.GetValue<double>()
            : double.NaN;
        return new GeneratorTrainOutcome(
            r.OutputDir,
            description,
            parameters,
            run["step"]!.GetValue<long>(),
            run["seconds"]!.GetValue<double>(),
            finalLoss,
            lastGrid
        );
    }

    private static Generator NewGridGenerator(int seed) => new((ulong)Seeds.Derive(seed, 0x6A1D));

    /// <summary>A PNG grid with one row of 10 samples per class, the same latents at every call.</summary>
    public static void WriteGrid(Func<Tensor, Tensor> sample, int numClasses, ImageDataset shape, string path)
    {
        const int perClass = 10;
        using var scope = NewDisposeScope();
        var labels = arange(numClasses, dtype: ScalarType.Int64).repeat_interleave(perClass);
        var images = sample(labels);
        var u8 = images.mul(255).round().clamp(0, 255).to(ScalarType.Byte).permute(0, 2, 3, 1).contiguous().cpu();
        var bytes = u8.data<byte>().ToArray();
        int size = shape.Height * shape.Width * shape.Channels;
        var rows = Enumerable
            .Range(0, numClasses)
            .Select(c =>
                (IReadOnlyList<byte[]>)
                    Enumerable
                        .Range(0, perClass)
                        .Select(j => bytes.AsSpan((c * perClass + j) * size, size).ToArray())
                        .ToList()
            )
            .ToList();
        ImageGrid.WritePng(rows, shape.Height, shape.Width, shape.Channels, path);
    }
}

public sealed record GeneratorSampleRequest
{
    public required string Checkpoint { get; init; }
    public required string Output { get; init; }
    public long Count { get; init; } = 10_000;
    public int ChunkSize { get; init; } = 1000;
    public int Seed { get; init; }

    /// <summary>Guidance 2 with DPM-Solver++(2M) at 10 steps: the best of the sampler table in docs/GENERATORS.md
    /// (shipped DDPM, 1,000 samples: 93.2% recognised and FD 1.46, against 73.1% and 4.98 without guidance, and 73.1% /
    /// 4.33 at 25 steps without); guidance evaluates the network on twice the batch.</summary>
    public double Guidance { get; init; } = 2;

    public SamplerOptions Sampler { get; init; } = new(SamplerKind.DpmSolver2M, 10);
    public int BatchSize { get; init; } = 250;
    public int ShardIndex { get; init; }
    public int ShardCount { get; init; } = 1;
    public bool RawWeights { get; init; }
    public string Device { get; init; } = "cpu";

    /// <summary>An ONNX generator (Checkpoint ending in .onnx): its number of classes, output range and, when the
    /// signature is ambiguous, the names of its latent and label inputs.</summary>
    public int? OnnxClasses { get; init; }
    public FloatRange OnnxRange { get; init; } = FloatRange.MinusOneOne;
    public string? LatentInput { get; init; }
    public string? LabelInput { get; init; }
}

public sealed record GeneratorSampleOutcome(
    string Store,
    string Labels,
    long Count,
    int ChunksWritten,
    bool Complete,
    double Seconds
);

public static class GeneratorSampleRun
{
    /// <param name="ranks">a job of several ranks fills the store as that many shards (rank i of n writes the
    /// chunks c with c mod n = i) and rank 0 merges them</param>
    public static GeneratorSampleOutcome Execute(
        GeneratorSampleRequest r,
        IProgress<(long Done, long Total)>? progress = null,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        if (job.Size > 1 && r.ShardCount != 1)
            throw new ArgumentException("--shard and mpiexec both split the work: use one of them");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (r.Checkpoint.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
            return FromOnnx(r, clock, progress, cancel, job);
        var stem = GeneratorCheckpoint.Resolve(r.Checkpoint);
        // the record only: loading the generator below reads and checks its tensors
        var run = GeneratorCheckpoint.ReadRun(stem);
        bool isGan = run["kind"]?.GetValue<string>() == "gan";
        var device = torch.device(r.Device);
        using var ddpm = isGan ? null : DdpmTraining.Load(stem, ema: !r.RawWeights, r.Device);
        using var gan = isGan ? GanTraining.Load(stem, r.Device) : null;
        var (classes, h, w, c) = isGan
            ? (gan!.Spec.NumClasses, gan.Spec.Height, gan.Spec.Width, gan.Spec.Channels)
            : (ddpm!.Spec.Net.NumClasses, ddpm.Spec.Net.Height, ddpm.Spec.Net.Width, ddpm.Spec.Net.Channels);
        var plan = new StorePlan(
            r.Count,
            classes,
            h,
            w,
            c,
            r.ChunkSize,
            r.Seed,
            isGan ? 1 : r.Guidance,
            isGan ? null : r.Sampler,
            r.ShardIndex,
            r.ShardCount
        );
        var description = new JsonObject
        {
            ["kind"] = isGan ? "gan" : "ddpm",
            ["weightsSha256"] = run["weightsSha256"]?.DeepClone(),
            ["ema"] = !isGan && !r.RawWeights,
        };
        StoreWriter.Source source = isGan
            ? (labels, g) => gan!.Sample(labels.to(device), g)
            : (labels, g) => ddpm!.Sample(labels.to(device), plan.SamplerOrDefault, r.Guidance, g, cancel: cancel);
        return Fill(r, plan, description, source, clock, progress, cancel, job);
    }

    private static GeneratorSampleOutcome Fill(
        GeneratorSampleRequest r,
        StorePlan plan,
        JsonObject description,
        StoreWriter.Source source,
        System.Diagnostics.Stopwatch clock,
        IProgress<(long Done, long Total)>? progress,
        CancellationToken cancel,
        IRanks job
    )
    {
        if (job.Size > 1)
            plan = plan with { ShardIndex = job.Rank, ShardCount = job.Size };
        var (written, complete) = StoreWriter.Fill(
            r.Output,
            plan,
            description,
            source,
            r.BatchSize,
            progress,
            cancel,
            job
        );
        return new GeneratorSampleOutcome(
            r.Output,
            StoreWriter.LabelsPath(r.Output),
            r.Count,
            written,
            complete,
            clock.Elapsed.TotalSeconds
        );
    }

    private static GeneratorSampleOutcome FromOnnx(
        GeneratorSampleRequest r,
        System.Diagnostics.Stopwatch clock,
        IProgress<(long Done, long Total)>? progress,
        CancellationToken cancel,
        IRanks job
    )
    {
        int classes =
            r.OnnxClasses
            ?? throw new ArgumentException("an ONNX generator does not say how many classes it has: give the number");
        using var onnx = new OnnxGenerator(r.Checkpoint, classes, r.OnnxRange, r.LatentInput, r.LabelInput);
        var plan = new StorePlan(
            r.Count,
            classes,
            onnx.Height,
            onnx.Width,
            onnx.Channels,
            r.ChunkSize,
            r.Seed,
            1,
            null,
            r.ShardIndex,
            r.ShardCount
        );
        var description = new JsonObject
        {
            ["kind"] = "onnx",
            ["modelSha256"] = onnx.Sha256,
            ["range"] = r.OnnxRange.ToString(),
        };
        return Fill(r, plan, description, onnx.Sample, clock, progress, cancel, job);
    }
}
