using System.CommandLine;
using ProxyRobust.Core;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

internal static class LabelCommand
{
    public static Command Create()
    {
        var classifier = new Option<string>("--classifier")
        {
            Description = "checkpoint of the labelling classifier",
            Required = true,
        };
        var input = new Option<string>("--in")
        {
            Description = "unlabeled images: uint8 N x H x W x C .npy, or raw .bin",
            Required = true,
        };
        var output = new Option<string?>("--out")
        {
            Description =
                "synthetic store to write (STORE.npy + STORE.labels.npy + STORE.confidence.npy); default: labels "
                + "beside --in",
        };
        var shape = new Option<string>("--shape")
        {
            Description = "H x W x C of the images of a raw .bin",
            DefaultValueFactory = _ => "32x32x3",
        };
        shape.Validators.Add(r =>
        {
            var dims = r.GetValueOrDefault<string>()?.Split('x') ?? [];
            if (dims.Length != 3 || !dims.All(d => int.TryParse(d, out var v) && v > 0))
                r.AddError($"--shape must look like 32x32x3, not '{r.GetValueOrDefault<string>()}'");
        });
        var batch = Shared.BatchSize(512);
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "label",
            "Pseudo-label unlabeled synthetic images with a classifier, keeping its confidence."
        )
        {
            classifier,
            input,
            output,
            shape,
            batch,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var dims = p.GetValue(shape)!.Split('x').Select(int.Parse).ToArray();
                var request = new LabelRequest(
                    p.GetValue(classifier)!,
                    p.GetValue(input)!,
                    p.GetValue(output),
                    (dims[0], dims[1], dims[2]),
                    p.GetValue(batch),
                    p.GetValue(device)!
                );
                Shared.StartTorch(p.GetValue(threads));
                var o = ProgressView.Stages("label", progress => LabelRun.Execute(request, progress.Phase("images")));
                var rows = new List<(string, string)>
                {
                    ("images", o.Images.ToString()),
                    ("labels", o.LabelsPath),
                    ("confidence", o.ConfidencePath),
                };
                rows.Add(("mean confidence", $"{o.MeanConfidence:P1}"));
                for (int c = 0; c < o.ClassCounts.Length; c++)
                    rows.Add(($"  class {c}", o.ClassCounts[c].ToString()));
                Shared.Table("pseudo-labels", rows);
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
