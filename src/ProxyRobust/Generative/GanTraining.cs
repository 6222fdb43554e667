using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>How a conditional GAN is trained: iterations (generator steps), batch, Adam settings of Miyato et al.'s
/// standard CNN (lr 2e-4, betas 0.5 / 0.999, one discriminator step per generator step), checkpoint and grid
/// intervals.</summary>
public sealed record GanTrainOptions
{
    public long Steps { get; init; } = 20_000;
    public int BatchSize { get; init; } = 64;
    public double LearningRate { get; init; } = 2e-4;
    public double Beta1 { get; init; } = 0.5;
    public double Beta2 { get; init; } = 0.999;
    public int DiscriminatorSteps { get; init; } = 1;

    /// <summary>Weight of the mode-seeking term (Mao et al. 2019, eq. 3); 0 turns it off.</summary>
    public double ModeSeeking { get; init; } = 1;
    public long CheckpointEverySteps { get; init; } = 500;
    public long GridEverySteps { get; init; } = 2000;
    public int Seed { get; init; }
    public string Device { get; init; } = "cpu";
}

/// <summary>A trained conditional GAN's generator, for sampling (eval mode: batch norm uses its running
/// statistics, so a sample does not depend on the other images of its batch).</summary>
public sealed class Gan : IDisposable
{
    public GanSpec Spec { get; }
    public GanGenerator Generator { get; }

    public Gan(GanSpec spec, GanGenerator? generator = null)
    {
        Spec = spec;
        Generator = generator ?? new GanGenerator(spec);
    }

    /// <summary>Images in [0, 1] for the labels, from latents drawn from <paramref name="generator"/>.</summary>
    public Tensor Sample(Tensor labels, torch.Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        bool wasTraining = Generator.training;
        Generator.eval();
        var z = randn([labels.shape[0], Spec.LatentDim], device: labels.device, generator: generator);
        var x = Generator.call(z, labels);
        Generator.train(wasTraining);
        return ((x + 1) / 2).clamp(0, 1).MoveToOuterDisposeScope();
    }

    public void Dispose() => Generator.Dispose();
}

/// <summary>
/// Trains a class-conditional GAN with the hinge loss (Lim &amp; Ye 2017; Miyato et al. 2018): the discriminator
/// minimises E[max(0, 1 - D(x, y))] + E[max(0, 1 + D(G(z, y'), y'))], the generator -E[D(G(z, y'), y')], with y' the
/// labels of the real batch. Resumable like <see cref="DdpmTraining"/>: OUT/last holds both networks, both Adams'
/// moments and the step; batches and draws of step k depend only on (seed, k).
/// </summary>
public static class GanTraining
{
    private const string DiscriminatorPrefix = "discriminator.";
    private const string AdamG = "adamG.",
        AdamD = "adamD.";

    public static Gan Run(
        GanSpec spec,
        GanTrainOptions options,
        ImageDataset data,
        string outputDir,
        bool resume,
        IProgress<GeneratorProgress>? progress = null,
        Action<long, Gan>? grid = null,
        CancellationToken cancel = default
    )
    {
        GeneratorCheckpoint.CheckData(data, spec.Channels, spec.Height, spec.Width, spec.NumClasses, "GAN");
        var device = torch.device(options.Device);
        torch.manual_seed(options.Seed);
        var gan = new Gan(spec);
        using var d = new ProjectionDiscriminator(spec);
        gan.Generator.to(device);
        d.to(device);
        using var adamG = new Adam(gan.Generator, options.Beta1, options.Beta2);
        using var adamD = new Adam(d, options.Beta1, options.Beta2);
        var last = Path.Combine(outputDir, "last");
        long step = 0;
        double secondsBefore = 0;
        var history = new JsonArray();
        if (resume && File.Exists(last + ".json"))
            (step, secondsBefore, history) = Restore(last, spec, options, gan.Generator, d, adamG, adamD);
        Directory.CreateDirectory(outputDir);
        var sampler = new BatchSampler(
            data,
            options.BatchSize,
            shuffle: true,
            AugmentOptions.None,
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
        var log = new GeneratorLog(options.Steps, step, history, "discriminatorLoss", progress);
        void Save(string stem)
        {
            var tensors = new Dictionary<string, Tensor>();
            foreach (var (name, t) in gan.Generator.state_dict())
                tensors[name] = t;
            foreach (var (name, t) in d.state_dict())
                tensors[DiscriminatorPrefix + name] = t;
            foreach (var (name, t) in adamG.Buffers())
                tensors[AdamG + name] = t;
            foreach (var (name, t) in adamD.Buffers())
                tensors[AdamD + name] = t;
            GeneratorCheckpoint.Save(
                stem,
                tensors,
                new JsonObject
                {
                    ["kind"] = "gan",
                    ["spec"] = JsonFiles.ToNode(spec),
                    ["options"] = JsonFiles.ToNode(options),
                    ["step"] = step,
                    ["adamGSteps"] = adamG.Steps,
                    ["adamDSteps"] = adamD.Steps,
                    ["seconds"] = secondsBefore + clock.Elapsed.TotalSeconds,
                    ["history"] = history.DeepClone(),
                }
            );
        }
        gan.Generator.train();
        d.train();
        // Each generator step uses DiscriminatorSteps real batches for the discriminator, in sampler order.
        long batchIndex = step * options.DiscriminatorSteps;
        while (step < options.Steps)
        {
            int epoch = (int)(batchIndex / perEpoch);
            foreach (var batch in sampler.Epoch(epoch, (int)(batchIndex % perEpoch)))
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
                    torch.manual_seed(Seeds.Derive(options.Seed, batchIndex, 0x6A7));
                    using var g = new torch.Generator((ulong)Seeds.Derive(options.Seed, batchIndex, 0x6A8), device);
                    var (x, y) = batch.ToTensors(device);
                    var real = x * 2 - 1;
                    var z = randn([y.shape[0], spec.LatentDim], device: device, generator: g);
                    Tensor fake;
                    using (no_grad())
                        fake = gan.Generator.call(z, y);
                    var lossD =
                        nn.functional.relu(1 - d.call(real, y)).mean() + nn.functional.relu(1 + d.call(fake, y)).mean();
                    d.zero_grad();
                    lossD.backward();
                    adamD.Step(options.LearningRate);
                    batchIndex++;
                    float dValue = lossD.item<float>();
                    if (batchIndex % options.DiscriminatorSteps == 0)
                    {
                        var lossG = GeneratorLoss(gan.Generator, d, y, spec.LatentDim, options.ModeSeeking, g);
                        gan.Generator.zero_grad();
                        d.zero_grad();
                        lossG.backward();
                        adamG.Step(options.LearningRate);
                        step++;
                        log.Add(dValue, y.shape[0]);
                    }
                    if (!float.IsFinite(dValue))
                        throw new InvalidOperationException(
                            $"GAN training diverged at step {step} (discriminator loss {dValue}); "
                                + "lower the learning rate"
                        );
                }
                if (batchIndex % options.DiscriminatorSteps != 0)
                    continue;
                log.AfterStep(step);
                if (step % options.CheckpointEverySteps == 0)
                    Save(last);
                if (grid is not null && options.GridEverySteps > 0 && step % options.GridEverySteps == 0)
                    grid(step, gan);
            }
        }
        Save(last);
        Save(Path.Combine(outputDir, "final"));
        if (grid is not null && (options.GridEverySteps <= 0 || options.Steps % options.GridEverySteps != 0))
            grid(step, gan);
        gan.Generator.eval();
        return gan;
    }

    /// <summary>
    /// The generator's hinge loss -E[D(G(z, y), y)], plus, with weight lambda, the mode-seeking term of Mao et al. 2019
    /// (MSGAN, eq. 3): the batch is two halves with the same labels and different latents, and 1 / (mean|G(z1, y) -
    /// G(z2, y)| / mean|z1 - z2| + 1e-5) is minimised. Without it the conditional generator here learned to ignore z
    /// and gave one image per class (docs/GENERATORS.md).
    /// </summary>
    internal static Tensor GeneratorLoss(
        GanGenerator generator,
        ProjectionDiscriminator d,
        Tensor labels,
        int latentDim,
        double lambda,
        torch.Generator g
    )
    {
        using var scope = NewDisposeScope();
        long half = labels.shape[0] / 2;
        if (lambda <= 0 || half == 0)
        {
            var z = randn([labels.shape[0], latentDim], device: labels.device, generator: g);
            return (-d.call(generator.call(z, labels), labels).mean()).MoveToOuterDisposeScope();
        }
        var pairLabels = labels.narrow(0, 0, half).repeat(2);
        var z2 = randn([2 * half, latentDim], device: labels.device, generator: g);
        var images = generator.call(z2, pairLabels);
        var adversarial = -d.call(images, pairLabels).mean();
        var imageGap = (images.narrow(0, 0, half) - images.narrow(0, half, half)).abs().mean();
        var latentGap = (z2.narrow(0, 0, half) - z2.narrow(0, half, half)).abs().mean();
        return (adversarial + lambda / (imageGap / latentGap + 1e-5)).MoveToOuterDisposeScope();
    }

    private static (long Step, double Seconds, JsonArray History) Restore(
        string stem,
        GanSpec spec,
        GanTrainOptions options,
        GanGenerator generator,
        ProjectionDiscriminator d,
        Adam adamG,
        Adam adamD
    )
    {
        var (run, tensors) = GeneratorCheckpoint.Read(stem);
        if (run["kind"]?.GetValue<string>() != "gan" || JsonFiles.FromNode<GanSpec>(run["spec"]) != spec)
            throw new DataFormatException(
                stem + ".json",
                "was written for another generator; start a new output folder"
            );
        GeneratorCheckpoint.CheckSameOptions(
            run,
            options,
            o => o with { Steps = 0, CheckpointEverySteps = 0, GridEverySteps = 0, Device = "" },
            stem
        );
        GeneratorCheckpoint.LoadInto(generator, tensors, "", stem);
        GeneratorCheckpoint.LoadInto(d, tensors, DiscriminatorPrefix, stem);
        using (no_grad())
        {
            foreach (var (name, buffer) in adamG.Buffers())
                buffer.copy_(GeneratorCheckpoint.Require(tensors, AdamG + name, stem));
            foreach (var (name, buffer) in adamD.Buffers())
                buffer.copy_(GeneratorCheckpoint.Require(tensors, AdamD + name, stem));
        }
        foreach (var t in tensors.Values)
            t.Dispose();
        adamG.Steps = run["adamGSteps"]?.GetValue<long>() ?? 0;
        adamD.Steps = run["adamDSteps"]?.GetValue<long>() ?? 0;
        return (
            run["step"]?.GetValue<long>() ?? 0,
            run["seconds"]?.GetValue<double>() ?? 0,
            run["history"]?.DeepClone().AsArray() ?? []
        );
    }

    /// <summary>Loads a trained GAN's generator for sampling.</summary>
    public static Gan Load(string path, string device = "cpu")
    {
        var stem = GeneratorCheckpoint.Resolve(path);
        var (run, tensors) = GeneratorCheckpoint.Read(stem);
        if (run["kind"]?.GetValue<string>() != "gan")
            throw new DataFormatException(stem + ".json", "is not a GAN checkpoint");
        var spec =
            JsonFiles.FromNode<GanSpec>(run["spec"])
            ?? throw new DataFormatException(stem + ".json", "has no generator spec");
        var gan = new Gan(spec);
        GeneratorCheckpoint.LoadInto(gan.Generator, tensors, "", stem);
        foreach (var t in tensors.Values)
            t.Dispose();
        gan.Generator.to(torch.device(device));
        gan.Generator.eval();
        return gan;
    }
}
