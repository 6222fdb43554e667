using System.CommandLine;
using ProxyRobust.Data;
using ProxyRobust.Generative;
using ProxyRobust.Training;
using TorchSharp;

namespace ProxyRobust.Cli;

internal static class LabelCommand
{
    public static Command Create()
    {
        var classifier = new Option<string>("--classifier") { Description = "checkpoint of the labelling classifier", Required = true };
        var input = new Option<string>("--in") { Description = "unlabeled images: uint8 N x H x W x C .npy, or raw .bin", Required = true };
        var output = new Option<string?>("--out") { Description = "synthetic store to write (STORE.npy + STORE.labels.npy + STORE.confidence.npy); default: labels beside --in" };
        var shape = new Option<string>("--shape") { Description = "H x W x C of the images of a raw .bin", DefaultValueFactory = _ => "32x32x3" };
        var batch = Shared.BatchSize(512);
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command("label", "Pseudo-label unlabeled synthetic images with a classifier, keeping its confidence.")
        {
            classifier, input, output, shape, batch, device, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(p.GetValue(threads));
            var dims = p.GetValue(shape)!.Split('x');
            if (dims.Length != 3 || !dims.All(d => int.TryParse(d, out var v) && v > 0))
                throw new UsageException($"--shape must look like 32x32x3, not '{p.GetValue(shape)}'");
            var dev = torch.device(p.GetValue(device)!);
            using var model = Checkpoint.LoadClassifier(p.GetValue(classifier)!);
            model.to(dev);
            var inPath = p.GetValue(input)!;
            using var images = NpyDataset.ReadUnlabeled(inPath, (int.Parse(dims[0]), int.Parse(dims[1]), int.Parse(dims[2])));
            var labels = ProgressView.Count("label", images.Count, progress =>
                PseudoLabeler.Label(model, images, TrainCommand.Positive(p.GetValue(batch), "--batch-size"), dev, progress));

            var outPath = p.GetValue(output);
            string stem;
            if (outPath is null || Path.GetFullPath(outPath) == Path.GetFullPath(inPath))
                stem = Path.ChangeExtension(inPath, null);
            else
            {
                stem = Path.ChangeExtension(outPath, null);
                NpyDataset.Write(images, stem + ".npy", labelsPath: null);
            }
            Npy.WriteLabels(stem + ".labels.npy", labels.Predicted);
            Npy.WriteFloats(stem + ".confidence.npy", [labels.Confidence.Length], labels.Confidence);

            var counts = new int[model.Spec.NumClasses];
            foreach (var l in labels.Predicted) counts[l]++;
            var rows = new List<(string, string)> { ("images", images.Count.ToString()), ("labels", stem + ".labels.npy"), ("confidence", stem + ".confidence.npy") };
            rows.Add(("mean confidence", $"{(labels.Confidence.Length == 0 ? 0 : labels.Confidence.Average()):P1}"));
            for (int c = 0; c < counts.Length; c++) rows.Add(($"  class {c}", counts[c].ToString()));
            Shared.Table("pseudo-labels", rows);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
