using System.Globalization;
using System.Text;
using ProxyRobust.Certification;
using ProxyRobust.Core;
using ProxyRobust.Reporting;

namespace ProxyRobust.Experiments;

/// <summary>
/// Rebuilds an experiment's report (report.md and its PNG plots) from experiment.json alone, so any figure in
/// the docs can be regenerated with `proxyrobust report DIR`. Two kinds: "port-demo" (baseline vs PORT, paired on the
/// same test points) and "sweep" (accuracy against the number of real and proxy images).
/// </summary>
public static class ExperimentReport
{
    public const string FileName = "report.md";

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Write(string root)
    {
        var exp = Experiment.Read(root);
        var cells = exp.Cells.ToList();
        var md = exp.Kind switch
        {
            "port-demo" => Demo(root, exp, cells),
            "sweep" => Sweep(root, exp, cells),
            var k => throw new DataFormatException(
                Path.Combine(root, Experiment.FileName),
                $"unknown experiment kind '{k}'"
            ),
        };
        var report = Path.Combine(root, FileName);
        AtomicFile.WriteAllText(report, md);
        return report;
    }

    private static double P(double? v) => 100 * (v ?? double.NaN);

    private static string F(double v, int digits = 1) => double.IsNaN(v) ? "-" : v.ToString("F" + digits, Inv);

    private static string Signed(double v) => $"{(v >= 0 ? "+" : "")}{F(v)}";

    /// <summary>
    /// A plotted accuracy (in %) with the Wilson 95% interval of the per-point outcomes behind it, pooled over the
    /// cells
    /// it averages (their seeds share the test points' count, so the pooled fraction is that average).
    /// </summary>
    private static Estimate WithInterval(double percent, IEnumerable<string?> hits)
    {
        var pooled = hits.Where(h => h is not null).SelectMany(h => Bits.Parse(h)).ToList();
        if (pooled.Count == 0 || double.IsNaN(percent))
            return new Estimate(percent);
        var (low, high) = Stats.Wilson95(pooled.Count(h => h), pooled.Count);
        return new Estimate(percent, 100 * low, 100 * high);
    }

    /// <summary>A sweep cell's setting apart from its number of proxy images: cells with the same setting are
    /// compared.</summary>
    private static (int Real, double Gamma, double Eps, int Seed) Setting(CellRecord c) =>
        (c.Parameters.Real, c.Parameters.Gamma, c.Parameters.Eps, c.Parameters.Seed);

    /// <summary>"baseline" for a cell trained on the real images alone; for one trained with proxy images "PORT
    /// (held-out real)" or "PORT (NAME)" for a named proxy store.</summary>
    private static string Model(CellRecord cell) =>
        cell.Parameters.Proxy is { } name
            ? $"PORT ({name}{(cell.Parameters.Selection is { } selection ? $", {selection}" : "")})"
        : cell.Parameters.Synthetic > 0 ? HeldOut
        : "baseline";

    private const string HeldOut = "PORT (held-out real)";

    /// <summary>The models of the cells, baseline first, then in the order of the cells.</summary>
    private static List<string> Models(List<CellRecord> cells) =>
        cells.Select(Model).Distinct().OrderBy(m => m == "baseline" ? 0 : 1).ToList();

    /// <summary>Per seed and PORT model, the baseline cell and that model's cell (seeds missing either are left
    /// out).</summary>
    private static IEnumerable<(int Seed, string Model, CellRecord Baseline, CellRecord Port)> Pairs(
        List<CellRecord> cells
    ) =>
        from seed in cells.Select(c => c.Parameters.Seed).Distinct().Order()
        let b = cells.FirstOrDefault(c => c.Parameters.Seed == seed && Model(c) == "baseline")
        from model in Models(cells).Where(m => m != "baseline")
        let p = cells.FirstOrDefault(c => c.Parameters.Seed == seed && Model(c) == model)
        where b is not null && p is not null
        select (seed, model, b!, p!);

    /// <summary>", MODEL" when several PORT models are compared, nothing when there is one.</summary>
    private static string Which(List<CellRecord> cells, string model) =>
        Models(cells).Count(m => m != "baseline") > 1 ? $", {model}" : "";

    /// <summary>What the proxy images of the experiment's cells are.</summary>
    private static string ProxySentence(ExperimentRecord exp)
    {
        var named = exp
            .Cells.Where(c => c.Parameters.Proxy is not null)
            .Select(c => c.Parameters.Proxy!)
            .Distinct()
            .ToList();
        if (named.Count == 0)
            return "proxy images are held-out real training images (an ideal proxy) mixed into every batch.";
        bool holdout = exp.Cells.Any(c => c.Parameters.Proxy is null && c.Parameters.Synthetic > 0);
        return "proxy images, mixed into every batch, are "
            + (holdout ? $"held-out real training images (an ideal proxy) for {HeldOut} and " : "")
            + string.Join(", ", named.Select(n => $"samples of the proxy store '{n}' for PORT ({n})"))
            + ".";
    }

    private static string Header(ExperimentRecord exp, string title)
    {
        var sb = new StringBuilder();
        var s = exp.Settings;
        sb.AppendLine($"# {title}").AppendLine();
        sb.AppendLine($"Command: `{exp.Command}` (ProxyRobust {exp.Version}, updated {exp.Updated}).");
        sb.AppendLine();
        sb.AppendLine(
            $"Setting: PGD-{s.AttackSteps} adversarial training of `{s.Arch}` on {s.Data}, "
                + $"{s.Epochs} epochs over the real images, batch {s.BatchSize}, lr {s.LearningRate} (cosine"
                + (s.WarmupEpochs > 0 ? $" after {s.WarmupEpochs:0.##} epochs of linear warm-up" : "")
                + "); "
                + ProxySentence(exp)
                + " Test: "
                + $"clean and PGD-20 on the "
                + $"same {s.EvalPoints} test points for every model"
                + (
                    s.AutoAttackPoints > 0
                        ? $", AutoAttack ({EvaluateRun.Name(s.FinalAttack)}) on the first {s.AutoAttackPoints} of them."
                        : "."
                )
        );
        sb.AppendLine();
        return sb.ToString();
    }

    private static string Demo(string root, ExperimentRecord exp, List<CellRecord> allCells)
    {
        var cells = allCells.Where(c => !c.IsGaussian).ToList();
        var noise = allCells.Where(c => c.IsGaussian).ToList();
        var sb = new StringBuilder(Header(exp, "Robust training with proxy data (PORT) vs real data only"));
        var seeds = cells.Select(c => c.Parameters.Seed).Distinct().Order().ToList();
        sb.AppendLine(
            "| Model | Seed | Real | Proxy | Clean % | PGD-20 % | AutoAttack % | Best val. robust % (epoch) | Train "
                + "time |"
        );
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var c in cells.OrderBy(c => c.Parameters.Seed).ThenBy(c => c.Parameters.Synthetic))
        {
            var e = c.Evaluation;
            var best = c.History.Count == 0 ? null : c.History.MaxBy(h => h.ValRobust ?? 0);
            sb.AppendLine(
                $"| {Model(c)} | {c.Parameters.Seed} | {c.Parameters.Real} | {c.Parameters.Synthetic} | "
                    + $"{F(P(e.Clean))} | {F(P(e.Pgd20))} | "
                    + $"{(e.AutoAttack is { } aa ? $"{F(P(aa.Robust))} (n={aa.Points})" : "-")} | "
                    + $"{(best is null ? "-" : $"{F(P(best.ValRobust))} ({best.Epoch})")} | "
                    + $"{F(c.Seconds ?? double.NaN, 0)} s |"
            );
        }
        sb.AppendLine();
        sb.AppendLine(
            "Gain of PORT over the baseline, in points, with a 95% interval over the test points (paired: both "
                + "models on the same points):"
        );
        sb.AppendLine();
        var gains = new List<(string Model, string Metric, double Gain)>();
        foreach (var (seed, model, baseline, port) in Pairs(cells))
        {
            foreach (
                var (metric, hits) in new (string, Func<CellEvaluation, string?>)[]
                {
                    ("PGD-20", e => e.Pgd20Hits),
                    ("clean", e => e.CleanHits),
                    ("AutoAttack", e => e.AutoAttack?.Hits),
                }
            )
            {
                if (hits(baseline.Evaluation) is not { } bs || hits(port.Evaluation) is not { } ps)
                    continue;
                var (g, lo, hi) = Stats.PairedGain(Bits.Parse(bs), Bits.Parse(ps));
                gains.Add((model, metric, g));
                sb.AppendLine(
                    $"- seed {seed}{Which(cells, model)}, {metric}: **{Signed(g)}** points (95% CI {F(lo)} to "
                        + $"{F(hi)}, n = {Bits.Parse(bs).Length})"
                );
            }
        }
        if (seeds.Count > 1)
            foreach (var (model, metric) in gains.Select(g => (g.Model, g.Metric)).Distinct())
                sb.AppendLine(
                    $"- mean over {seeds.Count} seeds{Which(cells, model)}, {metric}: "
                        + $"{F(gains.Where(g => g.Model == model && g.Metric == metric).Average(g => g.Gain))} points"
                );
        sb.AppendLine();
        sb.AppendLine(
            "The interval covers the test-point sampling only; training randomness shows in the spread across seeds "
                + "(`proxyrobust demo --full` runs more seeds and a longer schedule)."
        );
        sb.AppendLine();

        // Plots: validation robust accuracy per epoch, and clean / PGD-20 / AutoAttack side by side.
        var curves = cells
            .Select(c =>
                (
                    $"{Model(c)} (seed {c.Parameters.Seed})",
                    (IReadOnlyList<(double, double)>)c.History.Select(h => ((double)h.Epoch, P(h.ValRobust))).ToList()
                )
            )
            .ToList();
        Plots.Lines(
            curves,
            Path.Combine(root, "validation.png"),
            $"Validation robust accuracy (PGD-{exp.Settings.AttackSteps}) during training",
            "epoch",
            "robust accuracy (%)"
        );
        var groups = new List<(string Group, IReadOnlyList<(string Series, Estimate Value)> Bars)>();
        foreach (
            var (metric, get, hits) in new (string, Func<CellEvaluation, double>, Func<CellEvaluation, string?>)[]
            {
                ("clean", e => P(e.Clean), e => e.CleanHits),
                ("PGD-20", e => P(e.Pgd20), e => e.Pgd20Hits),
                ("AutoAttack", e => e.AutoAttack is { } a ? P(a.Robust) : double.NaN, e => e.AutoAttack?.Hits),
            }
        )
        {
            var bars = new List<(string, Estimate)>();
            foreach (var kind in Models(cells))
            {
                var of = cells.Where(c => Model(c) == kind).ToList();
                var vals = of.Select(c => get(c.Evaluation)).Where(v => !double.IsNaN(v)).ToList();
                double mean = vals.Count == 0 ? double.NaN : vals.Average();
                bars.Add((kind, WithInterval(mean, of.Select(c => hits(c.Evaluation)))));
            }
            groups.Add((metric, bars));
        }
        Plots.GroupedBars(
            groups,
            Path.Combine(root, "accuracy.png"),
            "Test accuracy: real data only vs PORT (mean over seeds)",
            "accuracy (%, 95% interval over test points)"
        );
        sb.AppendLine("![Test accuracy](accuracy.png)").AppendLine();
        sb.AppendLine("![Validation robust accuracy](validation.png)").AppendLine();
        if (noise.Count > 0)
            Certified(root, noise, sb);
        sb.AppendLine($"Rebuild this report: `proxyrobust report {root}`.");
        return sb.ToString();
    }

    /// <summary>Randomized smoothing: Gaussian-noise training without and with proxy images, certified l-2
    /// accuracy.</summary>
    private static void Certified(string root, List<CellRecord> cells, StringBuilder sb)
    {
        var first = cells.Select(c => c.Evaluation.Certify).FirstOrDefault(c => c is not null);
        sb.AppendLine("## Certified robustness (randomized smoothing)").AppendLine();
        if (first is null)
        {
            sb.AppendLine("(no certificates in this experiment)").AppendLine();
            return;
        }
        sb.AppendLine(
            $"Gaussian-noise training (sigma {first.Sigma}) of the same architecture on the same real images, "
                + $"without and "
                + $"with the proxy images; CERTIFY (Cohen et al. 2019) with n0 = {first.N0}, n = {first.N}, alpha = "
                + $"{first.Alpha} on the first {first.Points} test points. With n = {first.N} no radius above "
                + $"{F(first.Sigma * SmoothingStatistics.NormalQuantile(Math.Pow(first.Alpha, 1.0 / first.N)), 2)} "
                + "can be certified."
        );
        sb.AppendLine();
        sb.AppendLine(
            "| Model | Seed | Real | Proxy | Clean % (base, noise-trained) | Certified % r=0 | r=0.25 | r=0.5 | ACR |"
        );
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        double[] Radii(CellRecord c) => c.Evaluation.Certify?.Radii ?? [];
        double At(double[] radii, double r) =>
            radii.Length == 0 ? double.NaN : 100.0 * radii.Count(x => x >= r) / radii.Length;
        foreach (var c in cells.OrderBy(c => c.Parameters.Seed).ThenBy(c => c.Parameters.Synthetic))
        {
            var radii = Radii(c);
            sb.AppendLine(
                $"| {Model(c)} | {c.Parameters.Seed} | {c.Parameters.Real} | {c.Parameters.Synthetic} | "
                    + $"{F(P(c.Evaluation.Clean))} | {F(At(radii, 0))} | {F(At(radii, 0.25))} | {F(At(radii, 0.5))} | "
                    + $"{F(c.Evaluation.Certify?.AverageCertifiedRadius ?? double.NaN, 3)} |"
            );
        }
        sb.AppendLine();
        foreach (var (seed, model, b, p) in Pairs(cells))
        {
            var (g, lo, hi) = Stats.PairedGain(
                Radii(b).Select(r => r >= 0.5).ToArray(),
                Radii(p).Select(r => r >= 0.5).ToArray()
            );
            sb.AppendLine(
                $"- seed {seed}{Which(cells, model)}, certified accuracy at r = 0.5: **{Signed(g)}** points "
                    + $"(paired 95% CI {F(lo)} to "
                    + $"{F(hi)}, n = {Radii(b).Length})"
            );
        }
        sb.AppendLine();
        var grid = Enumerable.Range(0, 21).Select(k => k * 0.05).ToList();
        Plots.CertifiedAccuracy(
            cells.Select(c =>
                (
                    $"{Model(c)} (seed {c.Parameters.Seed})",
                    (IReadOnlyList<(double, Estimate)>)
                        grid.Select(r =>
                                (
                                    r,
                                    Estimate.Wilson(At(Radii(c), r) / 100, Radii(c).Count(x => x >= r), Radii(c).Length)
                                )
                            )
                            .ToList()
                )
            ),
            Path.Combine(root, "certified.png")
        );
        sb.AppendLine("![Certified accuracy](certified.png)").AppendLine();
    }

    private static string Sweep(string root, ExperimentRecord exp, List<CellRecord> cells)
    {
        var sb = new StringBuilder(
            Header(exp, "Sample complexity: accuracy against the number of real and proxy images")
        );
        int planned = exp.Planned?.Count ?? cells.Count;
        if (cells.Count < planned)
            sb.AppendLine($"**Partial: {cells.Count} of {planned} cells finished.**").AppendLine();
        sb.AppendLine("| Real | Proxy | Gamma | Eps | Seed | Clean % | PGD-20 % | Best val. robust % | Train time |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        var ordered = cells
            .OrderBy(c => c.Parameters.Real)
            .ThenBy(c => c.Parameters.Synthetic)
            .ThenBy(c => c.Parameters.Gamma)
            .ThenBy(c => c.Parameters.Eps)
            .ThenBy(c => c.Parameters.Seed)
            .ToList();
        foreach (var c in ordered)
        {
            var e = c.Evaluation;
            double? best = c.History.Count == 0 ? null : c.History.Max(h => h.ValRobust ?? 0);
            sb.AppendLine(
                $"| {c.Parameters.Real} | {c.Parameters.Synthetic} | {c.Parameters.Gamma} | {c.Parameters.Eps} | "
                    + $"{c.Parameters.Seed} | "
                    + $"{F(P(e.Clean))} | {F(P(e.Pgd20))} | {(best is { } b ? F(100 * b) : "-")} | "
                    + $"{F(c.Seconds ?? double.NaN, 0)} s |"
            );
        }
        sb.AppendLine();
        // Each cell with proxy images against the real-only cell of the same real images, gamma, eps and seed.
        var pairs = (
            from c in ordered
            where c.Parameters.Synthetic > 0
            let b = ordered.FirstOrDefault(o => o.Parameters.Synthetic == 0 && Setting(o) == Setting(c))
            where b is not null
            select (Baseline: b, Port: c)
        ).ToList();
        if (pairs.Count > 0)
        {
            sb.AppendLine(
                    "Gain over the real-only model with the same real images and seed, in points, with a 95% "
                        + "interval over the test "
                        + "points (paired: both models on the same points):"
                )
                .AppendLine();
            foreach (var (b, c) in pairs)
            {
                string Gain(Func<CellEvaluation, string?> hits)
                {
                    var (g, lo, hi) = Stats.PairedGain(Bits.Parse(hits(b.Evaluation)), Bits.Parse(hits(c.Evaluation)));
                    return $"{Signed(g)} ({F(lo)} to {F(hi)})";
                }
                sb.AppendLine(
                    $"- {c.Parameters.Real} real + {c.Parameters.Synthetic} proxy, seed {c.Parameters.Seed}: "
                        + $"PGD-20 **{Gain(e => e.Pgd20Hits)}**, clean {Gain(e => e.CleanHits)}"
                );
            }
            sb.AppendLine();
        }
        // One line per (real, gamma, eps), averaged over seeds, against the number of proxy images; gamma and eps are
        // named in the legend only when the sweep varies them.
        bool severalGammas = ordered.Select(c => c.Parameters.Gamma).Distinct().Count() > 1;
        bool severalEps = ordered.Select(c => c.Parameters.Eps).Distinct().Count() > 1;
        IReadOnlyList<(string, IReadOnlyList<(double, Estimate)>)> Series(
            Func<CellEvaluation, double> metric,
            Func<CellEvaluation, string?> hits
        ) =>
            ordered
                .GroupBy(c => (c.Parameters.Real, c.Parameters.Gamma, c.Parameters.Eps))
                .Select(g =>
                    (
                        $"{g.Key.Real} real"
                            + (severalGammas ? $", gamma {g.Key.Gamma}" : "")
                            + (severalEps ? $", eps {g.Key.Eps}" : ""),
                        (IReadOnlyList<(double, Estimate)>)
                            g.GroupBy(c => c.Parameters.Synthetic)
                                .OrderBy(s => s.Key)
                                .Select(s =>
                                    (
                                        (double)s.Key,
                                        WithInterval(
                                            s.Average(c => metric(c.Evaluation)),
                                            s.Select(c => hits(c.Evaluation))
                                        )
                                    )
                                )
                                .ToList()
                    )
                )
                .ToList();
        var robust = Series(e => P(e.Pgd20), e => e.Pgd20Hits);
        var clean = Series(e => P(e.Clean), e => e.CleanHits);
        Plots.AgainstImageCount(
            robust,
            Path.Combine(root, "robust-vs-proxy.png"),
            "PGD-20 robust accuracy vs proxy images",
            "robust accuracy (%)"
        );
        Plots.AgainstImageCount(
            clean,
            Path.Combine(root, "clean-vs-proxy.png"),
            "Clean accuracy vs proxy images",
            "clean accuracy (%)"
        );
        Plots.Tradeoff(
            ordered
                .Select(c =>
                    (
                        $"{c.Parameters.Real}r+{c.Parameters.Synthetic}p",
                        WithInterval(P(c.Evaluation.Clean), [c.Evaluation.CleanHits]),
                        WithInterval(P(c.Evaluation.Pgd20), [c.Evaluation.Pgd20Hits])
                    )
                )
                .ToList(),
            Path.Combine(root, "tradeoff.png")
        );
        sb.AppendLine("![Robust accuracy vs proxy images](robust-vs-proxy.png)").AppendLine();
        sb.AppendLine("![Clean accuracy vs proxy images](clean-vs-proxy.png)").AppendLine();
        sb.AppendLine("![Clean vs robust accuracy](tradeoff.png)").AppendLine();
        sb.AppendLine($"Rebuild this report: `proxyrobust report {root}`.");
        return sb.ToString();
    }
}
