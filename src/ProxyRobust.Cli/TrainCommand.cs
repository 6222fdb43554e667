using System.CommandLine;
using ProxyRobust.Attacks;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Training;

namespace ProxyRobust.Cli;

internal static class TrainCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var data = Shared.Data();
        var labels = Shared.Labels();
        var classes = Shared.Classes();
        var evalData = new Option<string?>("--eval-data")
        {
            Description = "evaluation data (default: the test split of --data)",
        };
        var trainSize = new Option<int?>("--train-size")
        {
            Description = "train on a seeded, class-balanced subset of this many real images",
        }.Positive();
        var valSize = new Option<int>("--val-size")
        {
            Description = "hold out this many real training images to validate after every epoch; keeps OUT/best.*",
            DefaultValueFactory = _ => 0,
        }.NonNegative();
        var valAttack = Shared.ValAttack();
        var evalSize = new Option<int?>("--eval-size")
        {
            Description = "test on a seeded, class-balanced subset of this many images",
        }.Positive();
        var dataSeed = new Option<int>("--data-seed")
        {
            Description = "seed of the train/validation/hold-out subsets",
            DefaultValueFactory = _ => 0,
        };
        var arch = new Option<string>("--arch")
        {
            Description = "small-cnn | preact-resnet18 | wrn-D-K (e.g. wrn-16-4, wrn-28-10)",
            DefaultValueFactory = _ => "small-cnn",
        };
        var method = new Option<string>("--method")
        {
            Description =
                "standard | pgd (PGD-AT) | trades | fgsm (FGSM with random start) | gaussian (noise for smoothing)",
            DefaultValueFactory = _ => "standard",
        }.AcceptOnlyFromAmong("standard", "pgd", "trades", "fgsm", "gaussian");
        var norm = new Option<string>("--norm")
        {
            Description = "threat model: linf or l2",
            DefaultValueFactory = _ => "linf",
        }.AcceptOnlyFromAmong("linf", "l2");
        var eps = new Option<double?>("--eps")
        {
            Description = "perturbation budget (default 0.1 l-inf / 1.5 l-2 for 28x28 gray, 8/255 / 0.5 otherwise)",
        }.Positive();
        var steps = new Option<int>("--attack-steps")
        {
            Description = "PGD steps in training (and TRADES' inner steps)",
            DefaultValueFactory = _ => 10,
        }.Positive();
        var attackChunk = new Option<int>("--attack-chunk")
        {
            Description = "attack at most N examples at a time (0: whole batch; 16 speeds up ResNets at batch 128)",
            DefaultValueFactory = _ => 0,
        }.NonNegative();
        var stepSize = new Option<double?>("--step-size")
        {
            Description = "attack step size (default eps/4)",
        }.Positive();
        var beta = new Option<double>("--beta")
        {
            Description = "TRADES beta",
            DefaultValueFactory = _ => 6.0,
        }.NonNegative();
        var sigma = new Option<double>("--sigma")
        {
            Description = "Gaussian noise sigma (method gaussian)",
            DefaultValueFactory = _ => 0.25,
        }.Positive();
        var synthetic = new Option<string?>("--synthetic")
        {
            Description =
                "proxy images mixed into every batch: images .npy or raw .bin (labels beside it), or holdout:N (N "
                + "held-out real images)",
        };
        var syntheticLabels = new Option<string?>("--synthetic-labels")
        {
            Description = "int64 labels .npy of the synthetic images",
        };
        var syntheticScores = new Option<string?>("--synthetic-scores")
        {
            Description = "float32 .npy of per-image sampling scores (adaptive sampling)",
        };
        var syntheticSelect = new Option<string?>("--synthetic-select")
        {
            Description =
                "how --synthetic-scores become sampling weights: proportional (default), top:F (uniform over the best "
                + "fraction F) or temperature:T (weights exp(score / T)); or random:F, uniform over a random "
                + "fraction F without scores (the control of top:F)",
        };
        syntheticSelect.Validators.Add(r =>
        {
            var text = r.GetValueOrDefault<string?>();
            if (text is null)
                return;
            try
            {
                Proxy.SampleSelection.Parse(text);
            }
            catch (ArgumentException e)
            {
                r.AddError($"--synthetic-select {e.Message}");
            }
        });
        var syntheticBatch = new Option<int?>("--synthetic-batch")
        {
            Description = "synthetic images per batch (default: = --batch-size)",
        }.Positive();
        var gamma = new Option<double>("--gamma")
        {
            Description = "weight of the synthetic part of the loss: (1-gamma) real + gamma synthetic",
            DefaultValueFactory = _ => 0.5,
        }.Between(0, 1);
        var testSteps = new Option<int>("--test-attack-steps")
        {
            Description = "PGD steps of the final robust test",
            DefaultValueFactory = _ => 20,
        }.Positive();
        var epochs = new Option<int>("--epochs")
        {
            Description = "passes over the real training data",
            DefaultValueFactory = _ => 10,
        }.Positive();
        var batch = Shared.BatchSize(128);
        var lr = new Option<double>("--lr")
        {
            Description = "peak learning rate (cosine schedule per iteration)",
            DefaultValueFactory = _ => 0.1,
        }.Positive();
        var momentum = new Option<double>("--momentum")
        {
            Description = "SGD momentum",
            DefaultValueFactory = _ => 0.9,
        }.Between(0, 1, open: false);
        var wd = new Option<double>("--weight-decay")
        {
            Description = "L2 weight decay",
            DefaultValueFactory = _ => 5e-4,
        }.NonNegative();
        var nesterov = new Option<bool>("--nesterov") { Description = "Nesterov momentum" };
        var syncNorm = new Option<bool>("--sync-batchnorm")
        {
            Description = "under mpiexec: batch norms use the whole global batch's statistics (default: each rank's)",
        };
        var warmup = new Option<double>("--warmup-epochs")
        {
            Description = "linear warm-up length in epochs",
            DefaultValueFactory = _ => 0,
        }.NonNegative();
        var smoothing = new Option<double>("--label-smoothing")
        {
            Description = "label smoothing in the cross-entropy",
            DefaultValueFactory = _ => 0,
        }.Between(0, 1);
        var ema = new Option<double?>("--ema")
        {
            Description = "keep an exponential moving average of the weights with this decay (e.g. 0.999)",
        }.Between(0, 1, open: true);
        var crop = new Option<int>("--crop-padding")
        {
            Description = "random crop after zero padding by this many pixels (0: off)",
            DefaultValueFactory = _ => 0,
        }.NonNegative();
        var flip = new Option<bool>("--flip")
        {
            Description = "random horizontal flips (right for CIFAR, wrong for digits)",
        };
        var checkpointEvery = new Option<int>("--checkpoint-every")
        {
            Description = "save a resumable checkpoint every N steps",
            DefaultValueFactory = _ => 200,
        }.Positive();
        var output = new Option<string>("--out")
        {
            Description = "output folder (checkpoints, result.json)",
            Required = true,
        };
        var resume = new Option<bool>("--resume") { Description = "continue from OUT/last.* after an interruption" };
        var seed = Shared.Seed();
        var device = Shared.Device();
        var threads = Shared.Threads();

        var cmd = new Command(
            "train",
            "Train a classifier: standard, adversarial (PGD-AT, TRADES, FGSM-RS) or with Gaussian noise, on real "
                + "data mixed with proxy data (PORT)."
        )
        {
            data,
            labels,
            classes,
            evalData,
            trainSize,
            valSize,
            valAttack,
            evalSize,
            dataSeed,
            arch,
            method,
            norm,
            eps,
            steps,
            attackChunk,
            stepSize,
            beta,
            sigma,
            synthetic,
            syntheticLabels,
            syntheticScores,
            syntheticSelect,
            syntheticBatch,
            gamma,
            testSteps,
            epochs,
            batch,
            lr,
            momentum,
            wd,
            nesterov,
            syncNorm,
            warmup,
            smoothing,
            ema,
            crop,
            flip,
            checkpointEvery,
            output,
            resume,
            seed,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                using var ranks = Shared.StartRanks();
                Shared.StartTorch(p.GetValue(threads), ranks);
                var config = new TrainRunConfig
                {
                    Data = p.GetValue(data)!,
                    Labels = p.GetValue(labels),
                    Classes = p.GetValue(classes),
                    EvalData = p.GetValue(evalData),
                    TrainSize = p.GetValue(trainSize),
                    ValSize = p.GetValue(valSize),
                    ValAttack = p.GetValue(valAttack)!,
                    EvalSize = p.GetValue(evalSize),
                    DataSeed = p.GetValue(dataSeed),
                    Arch = p.GetValue(arch)!,
                    Method = Enum.Parse<TrainMethod>(p.GetValue(method)!, ignoreCase: true),
                    Norm = ThreatModel.ParseNorm(p.GetValue(norm)!),
                    Epsilon = p.GetValue(eps),
                    AttackSteps = p.GetValue(steps),
                    AttackChunk = p.GetValue(attackChunk),
                    StepSize = p.GetValue(stepSize),
                    Beta = p.GetValue(beta),
                    Sigma = p.GetValue(sigma),
                    Synthetic = p.GetValue(synthetic),
                    SyntheticLabels = p.GetValue(syntheticLabels),
                    SyntheticScores = p.GetValue(syntheticScores),
                    SyntheticSelection = p.GetValue(syntheticSelect),
                    SyntheticBatch = p.GetValue(syntheticBatch),
                    Gamma = p.GetValue(gamma),
                    TestAttackSteps = p.GetValue(testSteps),
                    OutputDir = p.GetValue(output)!,
                    Resume = p.GetValue(resume),
                    Options = new TrainOptions
                    {
                        Epochs = p.GetValue(epochs),
                        BatchSize = p.GetValue(batch),
                        LearningRate = p.GetValue(lr),
                        Momentum = p.GetValue(momentum),
                        WeightDecay = p.GetValue(wd),
                        Nesterov = p.GetValue(nesterov),
                        SyncBatchNorm = p.GetValue(syncNorm),
                        WarmupEpochs = p.GetValue(warmup),
                        LabelSmoothing = p.GetValue(smoothing),
                        EmaDecay = p.GetValue(ema),
                        Seed = p.GetValue(seed),
                        CheckpointEverySteps = p.GetValue(checkpointEvery),
                        Augment = new AugmentOptions(p.GetValue(crop), p.GetValue(flip)),
                        Device = p.GetValue(device)!,
                    },
                };
                if (!ranks.Ranks.IsRoot) // rank 0 reports for the job
                {
                    TrainRun.Execute(config, null, cancel, null, ranks.Ranks);
                    return ExitCodes.Ok;
                }
                var result = ProgressView.Cell(
                    "train",
                    (progress, phases) => TrainRun.Execute(config, progress, cancel, phases, ranks.Ranks)
                );
                Report(result);
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    internal static void Report(TrainRunResult result)
    {
        var rows = new List<(string, string)>
        {
            ("model", result.Arch.ToString()),
            ("real training images", result.TrainImages.ToString()),
        };
        if (result.SyntheticImages > 0)
            rows.Add(("synthetic images", result.SyntheticImages.ToString()));
        rows.Add(("epochs", result.Training.History.Count.ToString()));
        rows.Add(("time", TimeSpan.FromSeconds(result.Training.Seconds).ToString(@"hh\:mm\:ss")));
        if (result.Training.Parallel is { } par)
            rows.Add(
                (
                    $"{par.Ranks} ranks: all-reduce",
                    $"{par.CommunicationSeconds:F1} s of {par.Seconds:F1} s ({par.CommunicationShare:P1}), "
                        + $"{par.Steps / Math.Max(1e-9, par.Seconds):F2} steps/s, "
                        + $"{par.BytesPerStep / 1e6:F2} MB per step"
                )
            );
        if (result.Training.History.Count > 0)
            rows.Add(("final train accuracy", $"{result.Training.History[^1].TrainAccuracy:P2}"));
        foreach (var t in new[] { result.Last, result.Best })
        {
            if (t is null)
                continue;
            var label = t.Weights == "best" ? $"best epoch ({t.Epoch})" : "last epoch";
            rows.Add(($"{label}: clean test accuracy", Shared.Percent(t.Clean, t.CleanWilson95)));
            if (t.Robust is { } r)
                rows.Add(($"{label}: robust ({t.Attack})", Shared.Percent(r, t.RobustWilson95)));
        }
        rows.Add(("weights", Path.Combine(result.OutputDir, "final.safetensors")));
        rows.Add(("results", Path.Combine(result.OutputDir, "result.json")));
        Shared.Table("training result", rows);
    }
}
