using System.CommandLine;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Training;

namespace ProxyRobust.Cli;

internal static class TrainCommand
{
    public static Command Create()
    {
        var data = Shared.Data();
        var labels = Shared.Labels();
        var evalData = new Option<string?>("--eval-data") { Description = "evaluation data (default: the test split of --data)" };
        var trainSize = new Option<int?>("--train-size") { Description = "train on a seeded, class-balanced subset of this many images" };
        var evalSize = new Option<int?>("--eval-size") { Description = "evaluate on a seeded, class-balanced subset of this many images" };
        var arch = new Option<string>("--arch") { Description = "small-cnn | preact-resnet18 | wrn-D-K (e.g. wrn-16-4, wrn-28-10)", DefaultValueFactory = _ => "small-cnn" };
        var epochs = new Option<int>("--epochs") { Description = "passes over the training data", DefaultValueFactory = _ => 10 };
        var batch = Shared.BatchSize(128);
        var lr = new Option<double>("--lr") { Description = "peak learning rate (cosine schedule per iteration)", DefaultValueFactory = _ => 0.1 };
        var momentum = new Option<double>("--momentum") { Description = "SGD momentum", DefaultValueFactory = _ => 0.9 };
        var wd = new Option<double>("--weight-decay") { Description = "L2 weight decay", DefaultValueFactory = _ => 5e-4 };
        var nesterov = new Option<bool>("--nesterov") { Description = "Nesterov momentum" };
        var warmup = new Option<double>("--warmup-epochs") { Description = "linear warm-up length in epochs", DefaultValueFactory = _ => 0 };
        var smoothing = new Option<double>("--label-smoothing") { Description = "label smoothing in the cross-entropy", DefaultValueFactory = _ => 0 };
        var ema = new Option<double?>("--ema") { Description = "keep an exponential moving average of the weights with this decay (e.g. 0.999)" };
        var crop = new Option<int>("--crop-padding") { Description = "random crop after zero padding by this many pixels (0: off)", DefaultValueFactory = _ => 0 };
        var flip = new Option<bool>("--flip") { Description = "random horizontal flips (right for CIFAR, wrong for digits)" };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "save a resumable checkpoint every N steps", DefaultValueFactory = _ => 200 };
        var output = new Option<string>("--out") { Description = "output folder (checkpoints, result.json)", Required = true };
        var resume = new Option<bool>("--resume") { Description = "continue from OUT/last.* after an interruption" };
        var seed = Shared.Seed();
        var device = Shared.Device();
        var threads = Shared.Threads();

        var cmd = new Command("train", "Train a classifier (standard training; adversarial trainers come with PORT).")
        {
            data, labels, evalData, trainSize, evalSize, arch, epochs, batch, lr, momentum, wd, nesterov, warmup, smoothing, ema,
            crop, flip, checkpointEvery, output, resume, seed, device, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(p.GetValue(threads));
            var config = new TrainRunConfig
            {
                Data = p.GetValue(data)!, Labels = p.GetValue(labels), EvalData = p.GetValue(evalData), TrainSize = p.GetValue(trainSize), EvalSize = p.GetValue(evalSize),
                Arch = p.GetValue(arch)!, OutputDir = p.GetValue(output)!, Resume = p.GetValue(resume),
                Options = new TrainOptions
                {
                    Epochs = Positive(p.GetValue(epochs), "--epochs"), BatchSize = Positive(p.GetValue(batch), "--batch-size"),
                    LearningRate = p.GetValue(lr), Momentum = p.GetValue(momentum), WeightDecay = p.GetValue(wd),
                    Nesterov = p.GetValue(nesterov), WarmupEpochs = p.GetValue(warmup), LabelSmoothing = p.GetValue(smoothing),
                    EmaDecay = p.GetValue(ema), Seed = p.GetValue(seed), CheckpointEverySteps = Positive(p.GetValue(checkpointEvery), "--checkpoint-every"),
                    Augment = new AugmentOptions(p.GetValue(crop), p.GetValue(flip)), Device = p.GetValue(device)!,
                },
            };
            var result = ProgressView.Train("train", progress => TrainRun.Execute(config, progress));
            Report(result);
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    internal static int Positive(int value, string name) =>
        value > 0 ? value : throw new UsageException($"{name} must be positive, got {value}");

    internal static void Report(TrainRunResult result)
    {
        var rows = new List<(string, string)>
        {
            ("model", result.Arch.ToString()),
            ("training images", result.TrainImages.ToString()),
            ("epochs", result.Training.History.Count.ToString()),
            ("time", TimeSpan.FromSeconds(result.Training.Seconds).ToString(@"hh\:mm\:ss")),
        };
        if (result.Training.History.Count > 0)
            rows.Add(("final train accuracy", $"{result.Training.History[^1].TrainAccuracy:P2}"));
        if (result.Training.FinalEval is { } e)
        {
            var (lo, hi) = e.Wilson95;
            rows.Add(("test accuracy", $"{e.Accuracy:P2}  (95% CI {lo:P1}-{hi:P1}, n={e.Total})"));
        }
        rows.Add(("weights", Path.Combine(result.OutputDir, "final.safetensors")));
        rows.Add(("results", Path.Combine(result.OutputDir, "result.json")));
        Shared.Table("training result", rows);
    }
}
