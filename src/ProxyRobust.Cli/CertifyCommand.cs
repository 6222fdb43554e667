using System.CommandLine;
using ProxyRobust.Certification;
using ProxyRobust.Core;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

internal static class CertifyCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "base classifier (trained with --method gaussian)",
            Required = true,
        };
        var data = Shared.Data("data to certify (same forms as for train)");
        var labels = Shared.Labels();
        var split = Shared.Split();
        var sigma = new Option<double>("--sigma")
        {
            Description = "noise level of the smoothed classifier",
            Required = true,
        }.Positive();
        var n0 = new Option<int>("--n0")
        {
            Description = "noise samples to select the top class",
            DefaultValueFactory = _ => 100,
        }.Positive();
        var n = new Option<int>("--n")
        {
            Description = "noise samples to estimate its probability",
            DefaultValueFactory = _ => 100_000,
        }.Positive();
        var alpha = new Option<double>("--alpha")
        {
            Description = "failure probability of each certificate",
            DefaultValueFactory = _ => 0.001,
        }.Between(0, 1, open: true);
        var count = new Option<int?>("--n-examples")
        {
            Description = "certify a seeded, class-balanced subset of this many points",
        }.Positive();
        // noise copies per forward: 64-100 is fastest on CPU (bench/RESULTS.md, 2x faster than 1000)
        var batch = Shared.BatchSize(100);
        var tsv = new Option<string>("--out")
        {
            Description = "per-example TSV (idx, label, predict, radius, correct, time), as the original tool writes",
            Required = true,
        };
        var json = new Option<string?>("--json") { Description = "summary JSON (default: the TSV's name with .json)" };
        var plot = new Option<string?>("--plot")
        {
            Description = "PNG of certified accuracy vs radius (default: the TSV's name with .png)",
        };
        var compare = new Option<string[]>("--compare")
        {
            Description = "summary JSONs of other models to draw on the same plot",
            AllowMultipleArgumentsPerToken = true,
            DefaultValueFactory = _ => [],
        };
        var label = new Option<string?>("--label")
        {
            Description = "this model's name in the plot legend (default: the checkpoint)",
        };
        var savePoints = Shared.SavePoints();
        var resume = new Option<bool>("--resume")
        {
            Description =
                "continue an interrupted certification from OUT.partial (same certificates as an uninterrupted run)",
        };
        var seed = Shared.Seed();
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "certify",
            "Randomized-smoothing certification (Cohen et al. 2019): certified l-2 radius per point, certified "
                + "accuracy by radius."
        )
        {
            checkpoint,
            data,
            labels,
            split,
            sigma,
            n0,
            n,
            alpha,
            count,
            batch,
            tsv,
            json,
            plot,
            compare,
            label,
            seed,
            resume,
            savePoints,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var request = new CertifyRequest
                {
                    Checkpoint = p.GetValue(checkpoint)!,
                    Data = p.GetValue(data),
                    Split = Shared.SplitOf(p.GetValue(split)!),
                    Labels = p.GetValue(labels),
                    Examples = p.GetValue(count),
                    Settings = new CertifySettings(
                        p.GetValue(sigma),
                        p.GetValue(n0),
                        p.GetValue(n),
                        p.GetValue(alpha),
                        p.GetValue(batch),
                        p.GetValue(seed)
                    ),
                    Device = p.GetValue(device)!,
                    Output = p.GetValue(tsv)!,
                    Json = p.GetValue(json),
                    Plot = p.GetValue(plot),
                    Compare = p.GetValue(compare)!,
                    Label = p.GetValue(label),
                    SavePoints = p.GetValue(savePoints),
                    Resume = p.GetValue(resume),
                };
                using var ranks = Shared.StartRanks();
                Shared.StartTorch(p.GetValue(threads), ranks);
                if (!ranks.Ranks.IsRoot) // rank 0 reports for the job
                {
                    CertifyRun.Execute(request, null, cancel, ranks.Ranks);
                    return ExitCodes.Ok;
                }
                var outcome = ProgressView.Stages(
                    "certify",
                    progress => CertifyRun.Execute(request, progress.Phase("points"), cancel, ranks.Ranks)
                );
                var (s, summary) = (request.Settings, outcome.Summary!);
                if (outcome.Resumed > 0)
                    Console.WriteLine(
                        $"resumed: {outcome.Resumed} of {summary.Points} points already certified before "
                            + $"the interruption"
                    );
                var rows = new List<(string, string)>
                {
                    ("model", outcome.Model),
                    ("points", summary.Points.ToString()),
                    ("sigma / n0 / n / alpha", $"{s.Sigma} / {s.N0} / {s.N} / {s.Alpha}"),
                    ("abstained", $"{summary.AbstentionRate:P1}"),
                    ("average certified radius", $"{summary.AverageCertifiedRadius:F3}"),
                };
                foreach (var (r, acc) in summary.CertifiedAccuracy.Where(r => r.Radius <= 2.0))
                    rows.Add(($"certified accuracy at r = {r:F2}", $"{acc:P1}"));
                rows.Add(("per-example TSV", request.Output));
                rows.Add(("plot", request.PlotPath));
                Shared.Table("certification", rows);
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
