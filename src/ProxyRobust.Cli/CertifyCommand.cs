using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using ProxyRobust.Certification;
using ProxyRobust.Data;
using ProxyRobust.Training;
using TorchSharp;
using ProxyRobust.Core;

namespace ProxyRobust.Cli;

internal static class CertifyCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "base classifier (trained with --method gaussian)", Required = true };
        var data = Shared.Data("data to certify (same forms as for train)");
        var labels = Shared.Labels();
        var split = new Option<string>("--split") { Description = "train or test", DefaultValueFactory = _ => "test" };
        var sigma = new Option<double>("--sigma") { Description = "noise level of the smoothed classifier", Required = true };
        var n0 = new Option<int>("--n0") { Description = "noise samples to select the top class", DefaultValueFactory = _ => 100 };
        var n = new Option<int>("--n") { Description = "noise samples to estimate its probability", DefaultValueFactory = _ => 100_000 };
        var alpha = new Option<double>("--alpha") { Description = "failure probability of each certificate", DefaultValueFactory = _ => 0.001 };
        var count = new Option<int?>("--n-examples") { Description = "certify a seeded, class-balanced subset of this many points" };
        var batch = Shared.BatchSize(100); // noise copies per forward: 64-100 is fastest on CPU (bench/RESULTS.md, 2x faster than 1000)
        var tsv = new Option<string>("--out") { Description = "per-example TSV (idx, label, predict, radius, correct, time), as the original tool writes", Required = true };
        var json = new Option<string?>("--json") { Description = "summary JSON (default: the TSV's name with .json)" };
        var plot = new Option<string?>("--plot") { Description = "PNG of certified accuracy vs radius (default: the TSV's name with .png)" };
        var compare = new Option<string[]>("--compare") { Description = "summary JSONs of other models to draw on the same plot", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [] };
        var label = new Option<string?>("--label") { Description = "this model's name in the plot legend (default: the checkpoint)" };
        var savePoints = Shared.SavePoints();
        var resume = new Option<bool>("--resume") { Description = "continue an interrupted certification from OUT.partial (same certificates as an uninterrupted run)" };
        var seed = Shared.Seed();
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command("certify", "Randomized-smoothing certification (Cohen et al. 2019): certified l-2 radius per point, certified accuracy by radius.")
        {
            checkpoint, data, labels, split, sigma, n0, n, alpha, count, batch, tsv, json, plot, compare, label, seed, resume, savePoints, device, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(p.GetValue(threads));
            double s = p.GetValue(sigma), a = p.GetValue(alpha);
            if (s <= 0) throw new UsageException($"--sigma must be positive, got {s}");
            if (a is <= 0 or >= 1) throw new UsageException($"--alpha must be in (0,1), got {a}");
            int k0 = TrainCommand.Positive(p.GetValue(n0), "--n0"), k = TrainCommand.Positive(p.GetValue(n), "--n");
            // Read the curves to compare with first: a bad file fails before the long certification, not after.
            var others = p.GetValue(compare)!.Select(f => (Label: Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(f))) + "/" + Path.GetFileNameWithoutExtension(f),
                                                            Curve: CertificationRun.ReadCurve(f))).ToList();
            var dev = torch.device(p.GetValue(device)!);
            using var opened = Shared.OpenModelAndData(p.GetValue(checkpoint)!, ema: false, p.GetValue(data), p.GetValue(split)!,
                                                       p.GetValue(labels), p.GetValue(count), p.GetValue(seed), dev);
            var (model, dataset) = (opened.Model, opened.Points);
            if (p.GetValue(savePoints) is { } pointsPath) Shared.SavePoints(dataset, pointsPath);

            // Each certified point is appended to OUT.partial as it finishes; --resume continues from it (every point has
            // its own seed, so a resumed run gives the same certificates as an uninterrupted one).
            var tsvPath = p.GetValue(tsv)!;
            var partial = tsvPath + ".partial";
            var earlier = p.GetValue(resume) && File.Exists(partial) ? CertificationRun.ReadTsv(partial, dataset.Count) : [];
            if (earlier.Count > 0) Console.WriteLine($"resuming: {earlier.Count} of {dataset.Count} points already certified in {partial}");
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(partial))!);
            File.WriteAllText(partial, CertificationRun.TsvHeader + "\n" + string.Concat(earlier.Select(e => CertificationRun.TsvLine(e) + "\n")));
            var examples = ProgressView.Count("certify", dataset.Count, progress =>
            {
                var list = new List<CertifiedExample>(earlier);
                var done = earlier.Select(e => e.Index).ToHashSet();
                foreach (var e in CertificationRun.Certify(model, dataset, s, k0, k, a, TrainCommand.Positive(p.GetValue(batch), "--batch-size"), dev,
                                                           p.GetValue(seed), skip: done))
                {
                    list.Add(e);
                    File.AppendAllText(partial, CertificationRun.TsvLine(e) + "\n");
                    progress.Report((list.Count, dataset.Count));
                }
                return list.OrderBy(e => e.Index).ToList();
            });
            var summary = CertificationRun.Summarise(examples, s, k0, k, a);

            var text = new StringBuilder(CertificationRun.TsvHeader + "\n");
            foreach (var e in examples) text.Append(CertificationRun.TsvLine(e)).Append('\n');
            AtomicFile.WriteAllText(tsvPath, text.ToString());
            File.Delete(partial);
            var node = new JsonObject
            {
                ["checkpoint"] = p.GetValue(checkpoint), ["data"] = dataset.Source, ["points"] = summary.Points, ["sigma"] = s, ["n0"] = k0, ["n"] = k,
                ["alpha"] = a, ["seed"] = p.GetValue(seed), ["abstentionRate"] = summary.AbstentionRate,
                ["averageCertifiedRadius"] = summary.AverageCertifiedRadius,
                ["certifiedAccuracy"] = new JsonArray(summary.CertifiedAccuracy.Select(r => (JsonNode)new JsonObject { ["radius"] = r.Radius, ["accuracy"] = r.Accuracy }).ToArray()),
                ["seconds"] = examples.Sum(e => e.Seconds),
            };
            AtomicFile.WriteAllText(p.GetValue(json) ?? Path.ChangeExtension(tsvPath, ".json"), node.ToJsonString(Checkpoint.Json));

            var plotPath = p.GetValue(plot) ?? Path.ChangeExtension(tsvPath, ".png");
            var mine = p.GetValue(label) ?? Path.GetFileName(Path.GetFullPath(p.GetValue(checkpoint)!).TrimEnd('/'));
            ProxyRobust.Reporting.Plots.CertifiedAccuracy(
                new[] { ($"{mine} (sigma {s})", summary.CertifiedAccuracy) }.Concat(others.Select(o => (o.Label, o.Curve))), plotPath);

            var rows = new List<(string, string)>
            {
                ("model", model.Spec.ToString()), ("points", summary.Points.ToString()), ("sigma / n0 / n / alpha", $"{s} / {k0} / {k} / {a}"),
                ("abstained", $"{summary.AbstentionRate:P1}"), ("average certified radius", $"{summary.AverageCertifiedRadius:F3}"),
            };
            foreach (var (r, acc) in summary.CertifiedAccuracy.Where(r => r.Radius <= 2.0))
                rows.Add(($"certified accuracy at r = {r:F2}", $"{acc:P1}"));
            rows.Add(("per-example TSV", tsvPath));
            rows.Add(("plot", plotPath));
            Shared.Table("certification", rows);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
