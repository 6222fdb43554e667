using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>How a DDPM is trained: iterations, batch, Adam's learning rate (linear warm-up, then constant, as in Ho et
/// al.), gradient clipping, EMA decay of the weights used for sampling, checkpoint and sample-grid intervals, seed, and
/// the device.</summary>
public sealed record DdpmTrainOptions
{
    /// <summary>3,000 steps of 128: 89 minutes at the 72 img/s measured on a 2-core Intel Xeon (AVX-512, 280 GFLOP/s),
    /// about 52 on the reference Zen 5, inside issue 13's 2-hour budget; 6,000 took 3 hours on the Xeon. The
    /// quality it reaches is in docs/GENERATORS.md.</summary>
    public long Steps { get; init; } = 3_000;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 2e-4;
    public long WarmupSteps { get; init; } = 500;
    public double GradClip { get; init; } = 1.0;
    public double EmaDecay { get; init; } = 0.999;
    public bool HorizontalFlip { get; init; }
    public long CheckpointEverySteps { get; init; } = 500;
    public long GridEverySteps { get; init; } = 2000;
    public int Seed { get; init; }
    public string Device { get; init; } = "cpu";
}

/// <summary>Progress of generator training: step of steps, the mean loss since the last history entry (every 100
/// steps), images per second and the estimated seconds left, at this process's pace.</summary>
public sealed record GeneratorProgress(long Step, long Steps, double Loss, double ImagesPerSecond, double EtaSeconds);

/// <summary>
/// Trains a <see cref="Ddpm"/> on real images, resumably: every CheckpointEverySteps steps (and when cancelled)
/// OUT/last holds the weights, their EMA, Adam's moments and the step; a resumed run continues from it with the same
/// batches and random draws and ends with the same weights as an uninterrupted one. The batch order of each epoch, the
/// time steps, the noise and the label dropout of step k depend only on (seed, k). At the end OUT/final holds the same.
/// </summary>
public static class DdpmTraining
{
    internal const string EmaPrefix = "ema.";
    private const string AdamPrefix = "adam.";

    /// <param name="grid">called every GridEverySteps steps and at the end with the step and the EMA model (to draw a
    /// sample grid)</param>
    public static Ddpm Run(
        DdpmSpec spec,
        DdpmTrainOptions options,
        ImageDataset data,
        string outputDir,
        bool resume,
        IProgress<GeneratorProgress>? progress = null,
        Action<long, Ddpm>? grid = null,
        CancellationToken cancel = default
    )
    {
        GeneratorCheckpoint.CheckData(
            data,
            spec.Net.Channels,
            spec.Net.Height,
            spec.Net.Width,
            spec.Net.NumClasses,
            "generator"
        );
        var device = torch.device(options.Device);
        torch.manual_seed(options.Seed);
        var ddpm = new Ddpm(spec);
        var ema = new Ddpm(spec);
        ddpm.Net.to(device);
        ema.Net.to(device);
        ema.Net.load_state_dict(ddpm.Net.state_dict());
        ema.Net.eval();
        using var adam = new Adam(ddpm.Net);
        var last = Path.Combine(outputDir, "last");
        long step = 0;
        double secondsBefore = 0;
        var history = new JsonArray();
        if (resume && File.Exists(last + ".json"))
            (step, secondsBefore, history) = Restore(last, spec, options, ddpm, ema, adam);
        Directory.CreateDirectory(outputDir);

        var sampler = new BatchSampler(
            data,
            options.BatchSize,
            shuffle: true,
            new AugmentOptions(0, options.HorizontalFlip),
            options.Seed,
            dropLast: true
        );
        long perEpoch = sampler.BatchesPerEpoch;
        if (perEpoch == 0)
            throw new DataFormatException(
                data.Source,
                $"{data.Count} images, fewer than one batch of {options.BatchSize}"
            );
        var clock = Stopwatch.StartNew();
        var log = new GeneratorLog(options.Steps, step, history, "loss", progress);
        void Save(string stem) =>
            SaveCheckpoint(
                stem,
                spec,
                options,
                ddpm,
                ema,
                adam,
                step,
                secondsBefore + clock.Elapsed.TotalSeconds,
                history
            );
        ddpm.Net.train();
        while (step < options.Steps)
        {
            int epoch = (int)(step / perEpoch);
            foreach (var batch in sampler.Epoch(epoch, (int)(step % perEpoch)))
            {
                if (step >= options.Steps)
                    break;
                if (cancel.IsCancellationRequested)
                {
                    Save(last);
                    cancel.ThrowIfCancellationRequested();
                }
                using (var scope = NewDisposeScope())
                {
                    // dropout draws from the global stream: seeded per step, so a resumed run draws the same
                    torch.manual_seed(Seeds.Derive(options.Seed, step, 0xD20F));
                    var (x, y) = batch.ToTensors(device);
                    using var generator = new Generator((ulong)Seeds.Derive(options.Seed, step, 0xD1FF), device);
                    var loss = ddpm.Loss(x, y, generator);
                    ddpm.Net.zero_grad();
                    loss.backward();
                    if (options.GradClip > 0)
                        adam.ClipGradients(options.GradClip);
                    double lr = options.LearningRate * Math.Min(1.0, (step + 1.0) / Math.Max(1, options.WarmupSteps));
                    adam.Step(lr);
                    // EMA with warm-up: decay min(d, (1 + k) / (10 + k)) at step k, so that the zero-output
                    // initial network does not linger in the sampling weights for thousands of steps (at 0.999 it
                    // still weighs 22% after 1,500 steps: the sample grids of a first run showed noise).
                    UpdateEma(ema.Net, ddpm.Net, Math.Min(options.EmaDecay, (1.0 + step) / (10.0 + step)));
                    float value = loss.item<float>();
                    if (!float.IsFinite(value))
                        throw new InvalidOperationException(
                            $"generator training diverged at step {step} (loss {value}); lower the learning rate"
                        );
                    log.Add(value, y.shape[0]);
                }
                step++;
                log.AfterStep(step);
                if (step % options.CheckpointEverySteps == 0)
                    Save(last);
                if (grid is not null && options.GridEverySteps > 0 && step % options.GridEverySteps == 0)
                    grid(step, ema);
            }
        }
        Save(last);
        Save(Path.Combine(outputDir, "final"));
        if (grid is not null && (options.GridEverySteps <= 0 || options.Steps % options.GridEverySteps != 0))
            grid(step, ema);
        ddpm.Dispose();
        return ema;
    }

    /// <summary>ema = d ema + (1 - d) weights, parameters only (the UNet has no buffers).</summary>
    private static void UpdateEma(UNet ema, UNet net, double decay)
    {
        using var noGrad = no_grad();
        foreach (var (e, p) in ema.parameters().Zip(net.parameters()))
            e.mul_(decay).add_(p, 1 - decay);
    }

    private static void SaveCheckpoint(
        string stem,
        DdpmSpec spec,
        DdpmTrainOptions options,
        Ddpm ddpm,
        Ddpm ema,
        Adam adam,
        long step,
        double seconds,
        JsonArray history
    )
    {
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, t) in ddpm.Net.state_dict())
            tensors[name] = t;
        foreach (var (name, t) in ema.Net.state_dict())
            tensors[EmaPrefix + name] = t;
        foreach (var (name, t) in adam.Buffers())
            tensors[AdamPrefix + name] = t;
        GeneratorCheckpoint.Save(
            stem,
            tensors,
            new JsonObject
            {
                ["kind"] = "ddpm",
                ["spec"] = JsonFiles.ToNode(spec),
                ["options"] = JsonFiles.ToNode(options),
                ["step"] = step,
                ["adamSteps"] = adam.Steps,
                ["seconds"] = seconds,
                ["history"] = history.DeepClone(),
            }
        );
    }

    private static (long Step, double Seconds, JsonArray History) Restore(
        string stem,
        DdpmSpec spec,
        DdpmTrainOptions options,
        Ddpm ddpm,
        Ddpm ema,
        Adam adam
    )
    {
        var (run, tensors) = GeneratorCheckpoint.Read(stem);
        var savedSpec = JsonFiles.FromNode<DdpmSpec>(run["spec"]);
        if (savedSpec is null || !SameSpec(savedSpec, spec))
            throw new DataFormatException(
                stem + ".json",
                "was written for another generator; start a new output folder"
            );
        GeneratorCheckpoint.CheckSameOptions(run, options, FreeOnResume, stem);
        using (var noGrad = no_grad())
        {
            GeneratorCheckpoint.LoadInto(ddpm.Net, tensors, "", stem);
            GeneratorCheckpoint.LoadInto(ema.Net, tensors, EmaPrefix, stem);
            foreach (var (name, buffer) in adam.Buffers())
                buffer.copy_(GeneratorCheckpoint.Require(tensors, AdamPrefix + name, stem));
        }
        foreach (var t in tensors.Values)
            t.Dispose();
        adam.Steps = run["adamSteps"]?.GetValue<long>() ?? 0;
        return (
            run["step"]?.GetValue<long>() ?? 0,
            run["seconds"]?.GetValue<double>() ?? 0,
            run["history"]?.DeepClone().AsArray() ?? []
        );
    }

    /// <summary>What may change when a run is resumed: the total steps, intervals and the device.</summary>
    internal static DdpmTrainOptions FreeOnResume(DdpmTrainOptions o) =>
        o with
        {
            Steps = 0,
            CheckpointEverySteps = 0,
            GridEverySteps = 0,
            Device = "",
        };

    /// <summary>Records compare arrays by reference; two specs are the same when their JSON is.</summary>
    private static bool SameSpec(DdpmSpec a, DdpmSpec b) =>
        JsonFiles.ToNode(a)!.ToJsonString() == JsonFiles.ToNode(b)!.ToJsonString();

    /// <summary>Loads a trained generator for sampling: its EMA weights (or the raw ones).</summary>
    public static Ddpm Load(string path, bool ema = true, string device = "cpu")
    {
        var stem = GeneratorCheckpoint.Resolve(path);
        var (run, tensors) = GeneratorCheckpoint.Read(stem);
        if (run["kind"]?.GetValue<string>() != "ddpm")
            throw new DataFormatException(stem + ".json", "is not a DDPM checkpoint");
        if (!ema && GeneratorPack.IsPacked(run))
            throw new DataFormatException(
                stem + ".json",
                "is packed and holds only the EMA weights; the raw weights are in the training checkpoint"
            );
        var spec =
            JsonFiles.FromNode<DdpmSpec>(run["spec"])
            ?? throw new DataFormatException(stem + ".json", "has no generator spec");
        var ddpm = new Ddpm(spec);
        using (var noGrad = no_grad())
            GeneratorCheckpoint.LoadInto(ddpm.Net, tensors, ema ? EmaPrefix : "", stem);
        foreach (var t in tensors.Values)
            t.Dispose();
        ddpm.Net.to(torch.device(device));
        ddpm.Net.eval();
        return ddpm;
    }
}
