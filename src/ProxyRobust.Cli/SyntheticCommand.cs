using System.CommandLine;
using ProxyRobust.Core;
using ProxyRobust.Experiments;
using ProxyRobust.Generative;

namespace ProxyRobust.Cli;

/// <summary>`synthetic report` (and `synthetic import`): synthetic stores made elsewhere or here, and how good they
/// are.</summary>
internal static class SyntheticCommand
{
    public static Command Create() =>
        new("synthetic", "Import synthetic images made elsewhere, and measure a store's quality against real data.")
        {
            Import(),
            Report(),
            Score(),
        };

    private static Command Score()
    {
        var discriminator = new Option<string>("--discriminator")
        {
            Description =
                "checkpoint of a real-vs-synthetic discriminator (class 0 real), e.g. one `arc` trained: "
                + "OUT/discriminators/*/final.json",
            Required = true,
        };
        var synthetic = new Option<string>("--synthetic") { Description = "the store to score", Required = true };
        var labels = Shared.Labels();
        var output = new Option<string?>("--out") { Description = "scores .npy (default: STORE.scores.npy)" };
        var batch = Shared.BatchSize(500);
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "score",
            "Score every image of a store by how real a robust discriminator finds it (its probability of the real "
                + "class), for train --synthetic-scores and --synthetic-select (adaptive sampling)."
        )
        {
            discriminator,
            synthetic,
            labels,
            output,
            batch,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var request = new ScoreRequest(
                    p.GetValue(discriminator)!,
                    p.GetValue(synthetic)!,
                    p.GetValue(output),
                    p.GetValue(labels),
                    p.GetValue(batch),
                    p.GetValue(device)!
                );
                Shared.StartTorch(p.GetValue(threads));
                var o = ProgressView.Stages("score", progress => ScoreRun.Execute(request, progress.Phase("images")));
                Shared.Table(
                    "scores (probability of real)",
                    [
                        ("scores", o.Scores),
                        ("images", o.Images.ToString("N0")),
                        ("mean / min / max", $"{o.Mean:F3} / {o.Min:F3} / {o.Max:F3}"),
                    ]
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    private static Command Import()
    {
        var from = new Option<string>("--from")
        {
            Description =
                "images made elsewhere: an image folder (a sub-folder per class), .npy (uint8 or float; NHWC, NCHW "
                + "or NHW), .npz (image + label arrays), or a raw uint8 .bin",
            Required = true,
        };
        var labels = new Option<string?>("--labels")
        {
            Description = "labels .npy (default: NAME.labels.npy beside --from, or the .npz's label array)",
        };
        var output = new Option<string>("--out")
        {
            Description = "store to write: STORE.npy (uint8 N x H x W x C) and STORE.labels.npy (int64)",
            Required = true,
        };
        var shape = new Option<string?>("--shape") { Description = "H x W x C of a raw .bin's images, e.g. 32x32x3" };
        shape.Validators.Add(r =>
        {
            var text = r.GetValueOrDefault<string?>();
            if (text is not null && ParseShape(text) is null)
                r.AddError($"--shape must look like 32x32x3, not '{text}'");
        });
        var classes = Shared.Classes();
        var range = new Option<string>("--float-range")
        {
            Description = "value range of float images: 0,1 or -1,1 (a generator's tanh output)",
            DefaultValueFactory = _ => "0,1",
        }.AcceptOnlyFromAmong("0,1", "-1,1");
        var unlabeled = new Option<bool>("--unlabeled")
        {
            Description = "import images without labels (then pseudo-label them with `proxyrobust label`)",
        };
        var cmd = new Command(
            "import",
            "Validate and convert images made elsewhere into a synthetic store (uint8 NHWC .npy + int64 labels)."
        )
        {
            from,
            labels,
            output,
            shape,
            classes,
            range,
            unlabeled,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var shapeText = p.GetValue(shape);
                var request = new ImportRequest(
                    p.GetValue(from)!,
                    p.GetValue(output)!,
                    p.GetValue(labels),
                    shapeText is null ? null : ParseShape(shapeText),
                    p.GetValue(classes),
                    p.GetValue(range) == "-1,1" ? FloatRange.MinusOneOne : FloatRange.ZeroOne,
                    p.GetValue(unlabeled)
                );
                var o = ProgressView.Stages(
                    "import",
                    progress =>
                        SyntheticImport.Execute(
                            request,
                            new Reporter<(long Done, long Total)>(x =>
                                progress.Report(("images", (int)x.Done, (int)x.Total))
                            )
                        )
                );
                var rows = new List<(string, string)>
                {
                    ("store", o.Store),
                    ("labels", o.LabelsPath ?? "none (run `proxyrobust label` next)"),
                    ("images", $"{o.Images:N0} of {o.Height}x{o.Width}x{o.Channels}"),
                    ("read as", o.Conversion),
                };
                for (int c = 0; c < o.ClassCounts.Length; c++)
                    rows.Add(($"  class {c}", o.ClassCounts[c].ToString("N0")));
                Shared.Table("imported", rows);
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    private static (int H, int W, int C)? ParseShape(string text)
    {
        var dims = text.Split('x');
        if (dims.Length != 3)
            return null;
        var v = new int[3];
        for (int i = 0; i < 3; i++)
            if (!int.TryParse(dims[i], out v[i]) || v[i] < 1)
                return null;
        return (v[0], v[1], v[2]);
    }

    private static Command Report()
    {
        var synthetic = new Option<string>("--synthetic")
        {
            Description = "the store: images .npy (labels at NAME.labels.npy), or any data set the tool reads",
            Required = true,
        };
        var labels = Shared.Labels();
        var classifier = new Option<string>("--classifier")
        {
            Description =
                "checkpoint of a classifier trained on the real data: its penultimate layer is the feature space, "
                + "its predictions the recognition rate",
            Required = true,
        };
        var real = Shared.Data("real data set (its test split is the reference)");
        var count = new Option<int>("--n")
        {
            Description = "class-balanced images per side (Fréchet distances depend on it: compare at equal n)",
            DefaultValueFactory = _ => 10_000,
        }.Positive();
        var k = new Option<int>("--k")
        {
            Description = "nearest neighbours of precision/recall's manifold balls",
            DefaultValueFactory = _ => 3,
        }.Positive();
        var wPerClass = new Option<int>("--wasserstein-per-class")
        {
            Description = "images per class and side of each exact-transport (W1) problem",
            DefaultValueFactory = _ => 200,
        }.Positive();
        var wRepeats = new Option<int>("--wasserstein-repeats")
        {
            Description = "subsamples behind the W1 interval",
            DefaultValueFactory = _ => 10,
        }.Positive();
        var robustModel = new Option<string?>("--robust-model")
        {
            Description =
                "a robust classifier: its average l-2 distance to the nearest adversarial example (FAB) on real and "
                + "on proxy images, beside the pixel-space W1 that bounds their difference",
        };
        var robustPoints = new Option<int>("--robust-points")
        {
            Description = "points per side for --robust-model",
            DefaultValueFactory = _ => 500,
        }.Positive();
        var robustEps = new Option<double>("--robust-eps")
        {
            Description = "l-2 budget at which --robust-model's robust accuracy is read off the same distances",
            DefaultValueFactory = _ => 1.5,
        }.Positive();
        var output = new Option<string>("--out")
        {
            Description = "folder for report.md, report.json and samples.png",
            Required = true,
        };
        var seed = Shared.Seed();
        var batch = Shared.BatchSize(500);
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "report",
            "Quality of a synthetic store against real data: per-class counts and recognition by a real-data "
                + "classifier, Fréchet distance and precision/recall in that classifier's feature space, a sample grid."
        )
        {
            synthetic,
            labels,
            classifier,
            real,
            count,
            k,
            wPerClass,
            wRepeats,
            robustModel,
            robustPoints,
            robustEps,
            output,
            seed,
            batch,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var request = new SyntheticReportRequest(
                    p.GetValue(synthetic)!,
                    p.GetValue(classifier)!,
                    p.GetValue(output)!,
                    p.GetValue(real),
                    p.GetValue(labels),
                    p.GetValue(count),
                    p.GetValue(seed),
                    p.GetValue(batch),
                    p.GetValue(device)!,
                    p.GetValue(k),
                    p.GetValue(wPerClass),
                    p.GetValue(wRepeats),
                    p.GetValue(robustModel),
                    p.GetValue(robustPoints),
                    p.GetValue(robustEps)
                );
                Shared.StartTorch(p.GetValue(threads));
                var r = ProgressView.Stages(
                    "synthetic report",
                    progress => SyntheticReportRun.Execute(request, progress)
                );
                var rows = new List<(string, string)>
                {
                    ("store", $"{r.Synthetic} ({r.StoreImages:N0} images)"),
                    ("feature space", r.FeatureSpace),
                    ("recognised", Shared.Percent(r.Store.Recognised, r.Store.RecognisedWilson95)),
                    ("Fréchet distance", $"{r.Store.FrechetDistance:F2}"),
                    ("mean per-class FD", $"{r.Store.MeanClassFrechetDistance:F2}"),
                    ("precision / recall", $"{r.Store.Precision:F3} / {r.Store.Recall:F3}"),
                };
                if (r.RealReference is { } q)
                    rows.Add(
                        (
                            "held-out real",
                            $"FD {q.FrechetDistance:F2}, per-class {q.MeanClassFrechetDistance:F2}, "
                                + $"precision / recall {q.Precision:F3} / {q.Recall:F3}"
                        )
                    );
                if (r.TransferGap is { } g)
                    rows.Add(
                        (
                            "average robustness",
                            $"real {g.MeanDistanceReal:F3}, proxy {g.MeanDistanceProxy:F3} (difference {g.Gap:F3}; "
                                + $"pixel W1 {r.Store.PixelWasserstein?.Mean:F3})"
                        )
                    );
                rows.Add(("report", r.Markdown));
                Shared.Table("synthetic store quality", rows);
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
