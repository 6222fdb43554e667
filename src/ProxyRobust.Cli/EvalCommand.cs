using System.CommandLine;
using System.Text.Json.Nodes;
using ProxyRobust.Data;
using ProxyRobust.Training;
using TorchSharp;

namespace ProxyRobust.Cli;

internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint: NAME.json, NAME.safetensors or a run folder", Required = true };
        var data = Shared.Data("evaluation data (same forms as for train)");
        var labels = Shared.Labels();
        var split = new Option<string>("--split") { Description = "train or test", DefaultValueFactory = _ => "test" };
        var ema = new Option<bool>("--ema") { Description = "evaluate the EMA weights (if the checkpoint has them)" };
        var batch = Shared.BatchSize(256);
        var json = new Option<string?>("--json") { Description = "write the results as JSON to this file" };
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command("eval", "Evaluate a classifier: clean accuracy with a Wilson 95% interval, per class.")
        {
            checkpoint, data, labels, split, ema, batch, json, device, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(p.GetValue(threads));
            var dev = torch.device(p.GetValue(device)!);
            using var model = Checkpoint.LoadClassifier(p.GetValue(checkpoint)!, p.GetValue(ema));
            model.to(dev);
            using var dataset = DatasetLoader.Load(p.GetValue(data), Shared.ParseSplit(p.GetValue(split)!), p.GetValue(labels));
            var spec = model.Spec;
            if ((dataset.Channels, dataset.Height, dataset.Width) != (spec.InChannels, spec.Height, spec.Width))
                throw new DataFormatException(dataset.Source,
                    $"images are {dataset.Channels}x{dataset.Height}x{dataset.Width}, the model expects {spec.InChannels}x{spec.Height}x{spec.Width}");
            if (dataset.NumClasses > spec.NumClasses)
                throw new DataFormatException(dataset.Source, $"{dataset.NumClasses} classes, the model has {spec.NumClasses}");
            var result = Evaluation.CleanAccuracy(model, dataset, TrainCommand.Positive(p.GetValue(batch), "--batch-size"), dev);
            var (lo, hi) = result.Wilson95;
            var rows = new List<(string, string)>
            {
                ("model", spec.ToString()),
                ("data", $"{dataset.Source} ({dataset.Count} images)"),
                ("clean accuracy", $"{result.Accuracy:P2}  (95% CI {lo:P1}-{hi:P1})"),
            };
            for (int c = 0; c < dataset.NumClasses; c++)
                rows.Add(($"  {dataset.ClassNames[c]}", result.TotalPerClass[c] == 0 ? "-" : $"{(double)result.CorrectPerClass[c] / result.TotalPerClass[c]:P1}"));
            Shared.Table("evaluation", rows);
            if (p.GetValue(json) is { } path)
            {
                var node = new JsonObject
                {
                    ["checkpoint"] = p.GetValue(checkpoint), ["data"] = dataset.Source, ["split"] = p.GetValue(split),
                    ["clean"] = new JsonObject { ["accuracy"] = result.Accuracy, ["correct"] = result.Correct, ["total"] = result.Total, ["wilson95"] = new JsonArray(lo, hi) },
                    ["perClass"] = new JsonObject(Enumerable.Range(0, dataset.NumClasses).Select(c => KeyValuePair.Create(dataset.ClassNames[c],
                        (JsonNode?)(result.TotalPerClass[c] == 0 ? null : (double)result.CorrectPerClass[c] / result.TotalPerClass[c])))),
                };
                AtomicFile.WriteAllText(path, node.ToJsonString(Checkpoint.Json));
            }
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
