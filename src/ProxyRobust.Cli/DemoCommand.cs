using System.CommandLine;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Training;

namespace ProxyRobust.Cli;

internal static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "output folder", DefaultValueFactory = _ => Path.Combine("runs", "demo") };
        var resume = new Option<bool>("--resume") { Description = "continue an interrupted demo" };
        var threads = Shared.Threads();
        var cmd = new Command("demo", "The main job on the built-in data: train the small CNN on Fashion-MNIST and report test accuracy.")
        {
            output, resume, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(p.GetValue(threads));
            var config = new TrainRunConfig
            {
                Data = DatasetLoader.FashionMnistName,
                Arch = "small-cnn",
                OutputDir = p.GetValue(output)!,
                Resume = p.GetValue(resume),
                Options = new TrainOptions { Epochs = 3, BatchSize = 128, LearningRate = 0.05, WarmupEpochs = 0.2, Seed = 0 },
            };
            var result = ProgressView.Train("demo", progress => TrainRun.Execute(config, progress));
            TrainCommand.Report(result);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
