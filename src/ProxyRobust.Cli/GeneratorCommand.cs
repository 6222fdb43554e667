using System.CommandLine;
using ProxyRobust.Experiments;
using ProxyRobust.Generative;

namespace ProxyRobust.Cli;

/// <summary>`generator train`, `generator sample` and `generator pack`: proxy distributions made here.</summary>
internal static class GeneratorCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var cmd = new Command(
            "generator",
            "Train a class-conditional generator on real images, and sample a store from it."
        )
        {
            Train(cancel),
            Sample(cancel),
            Pack(),
        };
        return cmd;
    }

    private static Command Pack()
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "a trained generator: its folder (final), or STEM / STEM.json",
            Required = true,
        };
        var output = new Option<string>("--out")
        {
            Description = "the packed checkpoint's stem: writes OUT.json and OUT.safetensors",
            Required = true,
        };
        var precision = new Option<string>("--precision")
        {
            Description =
                "storage precision of the weights: float16, int8 (a float32 scale per output channel; vectors in "
                + "float16) or float32; sampling computes in float32 either way",
            DefaultValueFactory = _ => "float16",
        };
        precision.AcceptOnlyFromAmong(GeneratorPack.Precisions);
        var cmd = new Command(
            "pack",
            "Write only what sampling needs (a DDPM's EMA weights, a GAN's generator), small enough to ship."
        )
        {
            checkpoint,
            output,
            precision,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var stem = p.GetValue(output)!;
                if (stem.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
                    stem = stem[..^5];
                Shared.StartTorch(1);
                long bytes = GeneratorPack.Write(p.GetValue(checkpoint)!, stem, p.GetValue(precision)!);
                Shared.Table(
                    "packed generator",
                    [
                        ("checkpoint", stem + ".json"),
                        ("weights", $"{stem}.safetensors ({bytes / 1e6:F1} MB, {p.GetValue(precision)})"),
                    ]
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    private static int[] Ints(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var values = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], out values[i]) || values[i] < 1)
                throw new UsageException($"{option} takes positive integers separated by commas, not '{text}'");
        return values;
    }

    private static Command Train(CancellationToken cancel)
    {
        var kind = new Option<string>("--kind")
        {
            Description =
                "ddpm (class-conditional DDPM) or gan (conditional DCGAN generator, projection discriminator)",
            DefaultValueFactory = _ => "ddpm",
        }.AcceptOnlyFromAmong("ddpm", "gan");
        var latent = new Option<int>("--latent-dim")
        {
            Description = "GAN: latent dimension",
            DefaultValueFactory = _ => 128,
        }.Positive();
        var ganWidth = new Option<int>("--gan-width")
        {
            Description = "GAN: base width (channels of the widest generator layer / 4)",
            DefaultValueFactory = _ => 64,
        }.Positive();
        var dSteps = new Option<int>("--d-steps")
        {
            Description = "GAN: discriminator steps per generator step",
            DefaultValueFactory = _ => 1,
        }.Positive();
        var modeSeeking = new Option<double>("--mode-seeking")
        {
            Description = "GAN: weight of the mode-seeking term against z being ignored (Mao et al. 2019; 0: off)",
            DefaultValueFactory = _ => 1,
        }.NonNegative();
        var data = Shared.Data();
        var classes = Shared.Classes();
        var trainSize = new Option<int?>("--train-size")
        {
            Description =
                "train on the class-balanced subset a classifier with the same --train-size, --val-size and "
                + "--data-seed trains on (default: all images)",
        }.Positive();
        var valSize = new Option<int>("--val-size")
        {
            Description = "the classifier's validation images, left out (as with train --val-size)",
            DefaultValueFactory = _ => 0,
        }.NonNegative();
        var dataSeed = new Option<int>("--data-seed")
        {
            Description = "seed of the data subsets",
            DefaultValueFactory = _ => 0,
        };
        var output = new Option<string>("--out") { Description = "output folder", Required = true };
        var resume = new Option<bool>("--resume") { Description = "continue from OUT/last after a kill" };
        var steps = new Option<int>("--steps")
        {
            Description = "training iterations (DDPM: 3,000 of 128 images, 89 min on a 2-core AVX-512 Xeon)",
            DefaultValueFactory = _ => 3_000,
        }.Positive();
        var batch = Shared.BatchSize(128);
        var lr = new Option<double>("--lr")
        {
            Description = "Adam learning rate",
            DefaultValueFactory = _ => 2e-4,
        }.Positive();
        var warmup = new Option<int>("--warmup-steps")
        {
            Description = "linear learning-rate warm-up",
            DefaultValueFactory = _ => 500,
        }.NonNegative();
        var ema = new Option<double>("--ema")
        {
            Description = "EMA decay of the sampling weights",
            DefaultValueFactory = _ => 0.999,
        }.Between(0, 1, open: false);
        var flip = new Option<bool>("--flip") { Description = "random horizontal flips" };
        var checkpointEvery = new Option<int>("--checkpoint-every")
        {
            Description = "write OUT/last every N steps",
            DefaultValueFactory = _ => 500,
        }.Positive();
        var gridEvery = new Option<int>("--grid-every")
        {
            Description = "write OUT/samples-STEP.png (a row per class) every N steps (0: at the end only)",
            DefaultValueFactory = _ => 2000,
        }.NonNegative();
        var baseChannels = new Option<int>("--base-channels")
        {
            Description = "UNet width (a multiple of 8)",
            DefaultValueFactory = _ => 32,
        }.Positive();
        var mults = new Option<string>("--channel-mults")
        {
            Description = "channel multiplier per resolution level",
            DefaultValueFactory = _ => "1,2,2",
        };
        var resBlocks = new Option<int>("--res-blocks")
        {
            Description = "residual blocks per level",
            DefaultValueFactory = _ => 2,
        }.Positive();
        var attention = new Option<string>("--attention")
        {
            Description = "image sides (pixels) with self-attention, e.g. 7 or 14,7 (default: none)",
            DefaultValueFactory = _ => "",
        };
        var dropout = new Option<double>("--dropout")
        {
            Description = "dropout",
            DefaultValueFactory = _ => 0.1,
        }.Between(0, 1, open: false);
        var schedule = new Option<string>("--schedule")
        {
            Description = "noise schedule",
            DefaultValueFactory = _ => "cosine",
        }.AcceptOnlyFromAmong("cosine", "linear");
        var diffusionSteps = new Option<int>("--diffusion-steps")
        {
            Description = "steps of the noise schedule",
            DefaultValueFactory = _ => 1000,
        }.Positive();
        var prediction = new Option<string>("--prediction")
        {
            Description = "what the network predicts: eps (the noise) or v",
            DefaultValueFactory = _ => "eps",
        }.AcceptOnlyFromAmong("eps", "v");
        var labelDropout = new Option<double>("--label-dropout")
        {
            Description = "probability of training without the label (classifier-free guidance)",
            DefaultValueFactory = _ => 0.1,
        }.Between(0, 1, open: false);
        var seed = Shared.Seed();
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "train",
            "Train a class-conditional DDPM or GAN on real images (resumable; sample grids as it goes)."
        )
        {
            kind,
            latent,
            ganWidth,
            dSteps,
            modeSeeking,
            data,
            classes,
            trainSize,
            valSize,
            dataSeed,
            output,
            resume,
            steps,
            batch,
            lr,
            warmup,
            ema,
            flip,
            checkpointEvery,
            gridEvery,
            baseChannels,
            mults,
            resBlocks,
            attention,
            dropout,
            schedule,
            diffusionSteps,
            prediction,
            labelDropout,
            seed,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var attentionText = p.GetValue(attention)!;
                var request = new GeneratorTrainRequest
                {
                    Kind = p.GetValue(kind) == "gan" ? GeneratorKind.Gan : GeneratorKind.Ddpm,
                    LatentDim = p.GetValue(latent),
                    GanWidth = p.GetValue(ganWidth),
                    GanOptions = new GanTrainOptions
                    {
                        Steps = p.GetValue(steps),
                        BatchSize = p.GetValue(batch),
                        LearningRate = p.GetValue(lr),
                        DiscriminatorSteps = p.GetValue(dSteps),
                        ModeSeeking = p.GetValue(modeSeeking),
                        CheckpointEverySteps = p.GetValue(checkpointEvery),
                        GridEverySteps = p.GetValue(gridEvery),
                    },
                    Data = p.GetValue(data),
                    Classes = p.GetValue(classes),
                    TrainSize = p.GetValue(trainSize),
                    ValSize = p.GetValue(valSize),
                    DataSeed = p.GetValue(dataSeed),
                    OutputDir = p.GetValue(output)!,
                    Resume = p.GetValue(resume),
                    BaseChannels = p.GetValue(baseChannels),
                    ChannelMults = Ints(p.GetValue(mults)!, "--channel-mults"),
                    ResBlocks = p.GetValue(resBlocks),
                    AttentionResolutions = attentionText.Length == 0 ? [] : Ints(attentionText, "--attention"),
                    Dropout = p.GetValue(dropout),
                    Schedule = p.GetValue(schedule) == "linear" ? ScheduleKind.Linear : ScheduleKind.Cosine,
                    DiffusionSteps = p.GetValue(diffusionSteps),
                    Prediction = p.GetValue(prediction) == "v" ? Prediction.V : Prediction.Epsilon,
                    LabelDropout = p.GetValue(labelDropout),
                    Options = new DdpmTrainOptions
                    {
                        Steps = p.GetValue(steps),
                        BatchSize = p.GetValue(batch),
                        LearningRate = p.GetValue(lr),
                        WarmupSteps = p.GetValue(warmup),
                        EmaDecay = p.GetValue(ema),
                        HorizontalFlip = p.GetValue(flip),
                        CheckpointEverySteps = p.GetValue(checkpointEvery),
                        GridEverySteps = p.GetValue(gridEvery),
                        Seed = p.GetValue(seed),
                        Device = p.GetValue(device)!,
                    },
                };
                Shared.StartTorch(p.GetValue(threads));
                var o = ProgressView.Generator(
                    p.GetValue(kind)!,
                    progress => GeneratorTrainRun.Execute(request, progress, cancel)
                );
                Shared.Table(
                    "generator",
                    [
                        ("network", o.Spec),
                        ("parameters", $"{o.Parameters:N0}"),
                        ("steps", o.Steps.ToString()),
                        ("final loss", $"{o.FinalLoss:F4}"),
                        ("time", $"{o.Seconds:F0} s"),
                        ("checkpoint", Path.Combine(o.OutputDir, "final.json")),
                        ("samples", o.Grid),
                    ]
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    private static Command Sample(CancellationToken cancel)
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description =
                "generator folder (its final.json), checkpoint .json, or an ONNX generator (.onnx, with --classes)",
            Required = true,
        };
        var onnxClasses = new Option<int?>("--classes")
        {
            Description = "ONNX generator: its number of classes (labels 0..N-1 go to its label input)",
        }.Positive();
        var onnxRange = new Option<string>("--output-range")
        {
            Description = "ONNX generator: range of its images, -1,1 (tanh) or 0,1",
            DefaultValueFactory = _ => "-1,1",
        }.AcceptOnlyFromAmong("-1,1", "0,1");
        var latentInput = new Option<string?>("--latent-input")
        {
            Description = "ONNX generator: name of its latent input (default: the float [N, D] input)",
        };
        var labelInput = new Option<string?>("--label-input")
        {
            Description = "ONNX generator: name of its label input (default: the integer [N] input)",
        };
        var output = new Option<string>("--out")
        {
            Description = "store to write: STORE.npy (uint8 N x H x W x C) + STORE.labels.npy",
            Required = true,
        };
        var count = new Option<int>("--n")
        {
            Description = "images (class-balanced)",
            DefaultValueFactory = _ => 10_000,
        }.Positive();
        var chunk = new Option<int>("--chunk-size")
        {
            Description = "images per chunk (the unit of resume and sharding)",
            DefaultValueFactory = _ => 1000,
        }.Positive();
        var guidance = new Option<double>("--guidance")
        {
            Description =
                "classifier-free guidance scale (1: conditional model alone, 0: unconditional; above 1 the network "
                + "runs on twice the batch)",
            DefaultValueFactory = _ => 2,
        }.NonNegative();
        var sampler = new Option<string>("--sampler")
        {
            Description = "dpm-solver (DPM-Solver++(2M)), ddim, or ancestral (every step)",
            DefaultValueFactory = _ => "dpm-solver",
        }.AcceptOnlyFromAmong("dpm-solver", "ddim", "ancestral");
        var steps = new Option<int>("--steps")
        {
            Description = "sampler steps: network evaluations per image (twice that with guidance)",
            DefaultValueFactory = _ => 10,
        }.Positive();
        var eta = new Option<double>("--eta")
        {
            Description = "DDIM's eta (0: deterministic)",
            DefaultValueFactory = _ => 0,
        }.Between(0, 1);
        var firstStep = new Option<int?>("--first-step")
        {
            Description =
                "DDPM: the noisiest step the sampler evaluates (default: the last, T-1); a lower one starts where the "
                + "x0 estimate is better conditioned",
        }.NonNegative();
        var shard = new Option<string>("--shard")
        {
            Description = "i/n: write only chunks c with c mod n = i (processes or machines sharing one store)",
            DefaultValueFactory = _ => "0/1",
        };
        shard.Validators.Add(r =>
        {
            var parts = r.GetValueOrDefault<string>()?.Split('/') ?? [];
            if (
                parts.Length != 2
                || !int.TryParse(parts[0], out var i)
                || !int.TryParse(parts[1], out var n)
                || n < 1
                || i < 0
                || i >= n
            )
                r.AddError($"--shard must look like 0/4 (index/count), not '{r.GetValueOrDefault<string>()}'");
        });
        var raw = new Option<bool>("--raw-weights")
        {
            Description = "sample with the trained weights instead of their EMA",
        };
        var batch = Shared.BatchSize(250);
        var seed = Shared.Seed();
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command("sample", "Fill a synthetic store from a trained generator (resumable, shardable).")
        {
            checkpoint,
            output,
            count,
            chunk,
            guidance,
            sampler,
            steps,
            eta,
            firstStep,
            shard,
            raw,
            onnxClasses,
            onnxRange,
            latentInput,
            labelInput,
            batch,
            seed,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var sh = p.GetValue(shard)!.Split('/').Select(int.Parse).ToArray();
                var kind = p.GetValue(sampler) switch
                {
                    "ddim" => SamplerKind.Ddim,
                    "ancestral" => SamplerKind.Ancestral,
                    _ => SamplerKind.DpmSolver2M,
                };
                var request = new GeneratorSampleRequest
                {
                    Checkpoint = p.GetValue(checkpoint)!,
                    Output = p.GetValue(output)!,
                    Count = p.GetValue(count),
                    ChunkSize = p.GetValue(chunk),
                    Seed = p.GetValue(seed),
                    Guidance = p.GetValue(guidance),
                    Sampler = new SamplerOptions(
                        kind,
                        p.GetValue(steps),
                        p.GetValue(eta),
                        FirstStep: p.GetValue(firstStep)
                    ),
                    BatchSize = p.GetValue(batch),
                    ShardIndex = sh[0],
                    ShardCount = sh[1],
                    RawWeights = p.GetValue(raw),
                    Device = p.GetValue(device)!,
                    OnnxClasses = p.GetValue(onnxClasses),
                    OnnxRange = p.GetValue(onnxRange) == "0,1" ? FloatRange.ZeroOne : FloatRange.MinusOneOne,
                    LatentInput = p.GetValue(latentInput),
                    LabelInput = p.GetValue(labelInput),
                };
                using var ranks = Shared.StartRanks();
                Shared.StartTorch(p.GetValue(threads), ranks);
                if (!ranks.Ranks.IsRoot) // rank 0 reports for the job
                {
                    GeneratorSampleRun.Execute(request, null, cancel, ranks.Ranks);
                    return ExitCodes.Ok;
                }
                var o = ProgressView.Stages(
                    "sample",
                    progress =>
                        GeneratorSampleRun.Execute(
                            request,
                            new Core.Reporter<(long Done, long Total)>(d =>
                                progress.Report(("images", (int)d.Done, (int)d.Total))
                            ),
                            cancel,
                            ranks.Ranks
                        )
                );
                Shared.Table(
                    "synthetic store",
                    [
                        ("store", o.Complete ? o.Store : $"{o.Store} (waiting for the other shards)"),
                        ("labels", o.Labels),
                        ("images", o.Count.ToString()),
                        ("chunks written now", o.ChunksWritten.ToString()),
                        ("time", $"{o.Seconds:F0} s"),
                    ]
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
