using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Reporting;

namespace ProxyRobust.Experiments;

/// <summary>
/// Rebuilds an experiment's report (report.md and its PNG plots) from experiment.json alone, so any figure in the docs can
/// be regenerated with `proxyrobust report DIR`. Two kinds: "port-demo" (baseline vs PORT, paired on the same test
/// points) and "sweep" (accuracy against the number of real and proxy images).
/// </summary>
public static class ExperimentReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Write(string root)
    {
        var path = Path.Combine(root, Experiment.FileName);
        if (!File.Exists(path)) throw new DataFormatException(path, "no experiment.json here (run demo or sweep first)");
        JsonObject exp;
        try { exp = JsonNode.Parse(File.ReadAllText(path))!.AsObject(); }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or NullReferenceException)
        {
            throw new DataFormatException(path, $"not a readable experiment file ({e.Message})");
        }
        var cells = exp["cells"]?.AsArray().Select(c => c!.AsObject()).ToList()
                    ?? throw new DataFormatException(path, "no 'cells' array");
        var md = (string?)exp["kind"] switch
        {
            "port-demo" => Demo(root, exp, cells),
            "sweep" => Sweep(root, exp, cells),
            var k => throw new DataFormatException(path, $"unknown experiment kind '{k}'"),
        };
        var report = Path.Combine(root, "report.md");
        AtomicFile.WriteAllText(report, md);
        return report;
    }

    private static double P(JsonNode? n) => 100 * (n?.GetValue<double>() ?? double.NaN);
    private static string F(double v, int digits = 1) => double.IsNaN(v) ? "-" : v.ToString("F" + digits, Inv);
    private static int Par(JsonObject cell, string key) => cell["parameters"]![key]!.GetValue<int>();
    private static double ParD(JsonObject cell, string key) => (double)cell["parameters"]![key]!;
    private static string Signed(double v) => $"{(v >= 0 ? "+" : "")}{F(v)}";

    /// <summary>A sweep cell's setting apart from its number of proxy images: cells with the same setting are compared.</summary>
    private static (int Real, double Gamma, double Eps, int Seed) Setting(JsonObject c) => (Par(c, "real"), ParD(c, "gamma"), ParD(c, "eps"), Par(c, "seed"));

    /// <summary>"PORT" for a cell trained with proxy images, "baseline" for one trained on the real images alone.</summary>
    private static string Model(JsonObject cell) => Par(cell, "synthetic") > 0 ? "PORT" : "baseline";

    /// <summary>Per seed, the baseline cell and the PORT cell (seeds missing either are left out).</summary>
    private static IEnumerable<(int Seed, JsonObject Baseline, JsonObject Port)> Pairs(List<JsonObject> cells) =>
        from seed in cells.Select(c => Par(c, "seed")).Distinct().Order()
        let b = cells.FirstOrDefault(c => Par(c, "seed") == seed && Model(c) == "baseline")
        let p = cells.FirstOrDefault(c => Par(c, "seed") == seed && Model(c) == "PORT")
        where b is not null && p is not null
        select (seed, b!, p!);

    private static string Header(JsonObject exp, string title)
    {
        var sb = new StringBuilder();
        var s = exp["settings"]!;
        sb.AppendLine($"# {title}").AppendLine();
        sb.AppendLine($"Command: `{(string?)exp["command"]}` (ProxyRobust {(string?)exp["version"]}, updated {(string?)exp["updated"]}).");
        sb.AppendLine();
        sb.AppendLine($"Setting: PGD-{(int)s["AttackSteps"]!} adversarial training of `{(string?)s["Arch"]}` on {(string?)s["Data"]}, " +
                      $"{(int)s["Epochs"]!} epochs over the real images, batch {(int)s["BatchSize"]!}, lr {(double)s["LearningRate"]!} (cosine); " +
                      $"proxy images are held-out real training images (an ideal proxy) mixed into every batch. Test: clean and PGD-20 on the " +
                      $"same {(int)s["EvalPoints"]!} test points for every model" +
                      ((int)s["AutoAttackPoints"]! > 0 ? $", AutoAttack (standard) on the first {(int)s["AutoAttackPoints"]!} of them." : "."));
        sb.AppendLine();
        return sb.ToString();
    }

    private static bool IsGaussian(JsonObject cell) => (string?)cell["parameters"]!["method"] == "gaussian";

    private static string Demo(string root, JsonObject exp, List<JsonObject> allCells)
    {
        var cells = allCells.Where(c => !IsGaussian(c)).ToList();
        var noise = allCells.Where(IsGaussian).ToList();
        var sb = new StringBuilder(Header(exp, "Robust training with proxy data (PORT) vs real data only"));
        var seeds = cells.Select(c => Par(c, "seed")).Distinct().Order().ToList();
        sb.AppendLine("| Model | Seed | Real | Proxy | Clean % | PGD-20 % | AutoAttack % | Best val. robust % (epoch) | Train time |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var c in cells.OrderBy(c => Par(c, "seed")).ThenBy(c => Par(c, "synthetic")))
        {
            var e = c["evaluation"]!;
            var history = c["history"]?.AsArray();
            var best = history?.MaxBy(h => h!["ValRobust"]?.GetValue<double>() ?? 0);
            sb.AppendLine($"| {Model(c)} | {Par(c, "seed")} | {Par(c, "real")} | {Par(c, "synthetic")} | " +
                          $"{F(P(e["clean"]))} | {F(P(e["pgd20"]))} | {(e["autoattack"] is { } aa ? $"{F(P(aa["robust"]))} (n={(int)aa["points"]!})" : "-")} | " +
                          $"{(best is null ? "-" : $"{F(P(best["ValRobust"]))} ({(int)best["Epoch"]!})")} | {F(c["seconds"]?.GetValue<double>() ?? double.NaN, 0)} s |");
        }
        sb.AppendLine();
        sb.AppendLine("Gain of PORT over the baseline, in points, with a 95% interval over the test points (paired: both models on the same points):");
        sb.AppendLine();
        var gains = new List<(string Metric, double Gain)>();
        foreach (var (seed, baseline, port) in Pairs(cells))
        {
            foreach (var (metric, key, sub) in new[] { ("PGD-20", "pgd20Hits", (string?)null), ("clean", "cleanHits", null), ("AutoAttack", "hits", "autoattack") })
            {
                JsonNode? Src(JsonObject c) => sub is null ? c["evaluation"] : c["evaluation"]![sub];
                if (Src(baseline) is not { } bs || Src(port) is not { } ps) continue;
                var (g, lo, hi) = Stats.PairedGain(Experiment.ParseBits((string?)bs[key]), Experiment.ParseBits((string?)ps[key]));
                gains.Add((metric, g));
                sb.AppendLine($"- seed {seed}, {metric}: **{Signed(g)}** points (95% CI {F(lo)} to {F(hi)}, n = {Experiment.ParseBits((string?)bs[key]).Length})");
            }
        }
        if (seeds.Count > 1)
            foreach (var metric in gains.Select(g => g.Metric).Distinct())
                sb.AppendLine($"- mean over {seeds.Count} seeds, {metric}: {F(gains.Where(g => g.Metric == metric).Average(g => g.Gain))} points");
        sb.AppendLine();
        sb.AppendLine("The interval covers the test-point sampling only; training randomness shows in the spread across seeds " +
                      "(`proxyrobust demo --full` runs more seeds and a longer schedule).");
        sb.AppendLine();

        // Plots: validation robust accuracy per epoch, and clean / PGD-20 / AutoAttack side by side.
        var curves = cells.Select(c => ($"{Model(c)} (seed {Par(c, "seed")})",
            (IReadOnlyList<(double, double)>)(c["history"]?.AsArray().Select(h => ((double)h!["Epoch"]!.GetValue<int>(), P(h["ValRobust"]))).ToList() ?? []))).ToList();
        Plots.Lines(curves, Path.Combine(root, "validation.png"), "Validation robust accuracy (PGD-10) during training", "epoch", "robust accuracy (%)");
        var groups = new List<(string Group, IReadOnlyList<(string Series, double Value)> Bars)>();
        foreach (var (metric, get) in new (string, Func<JsonNode, double>)[]
                 {
                     ("clean", e => P(e["clean"])), ("PGD-20", e => P(e["pgd20"])), ("AutoAttack", e => e["autoattack"] is { } a ? P(a["robust"]) : double.NaN),
                 })
        {
            var bars = new List<(string, double)>();
            foreach (var kind in new[] { "baseline", "PORT" })
            {
                var vals = cells.Where(c => Model(c) == kind).Select(c => get(c["evaluation"]!)).Where(v => !double.IsNaN(v)).ToList();
                bars.Add((kind, vals.Count == 0 ? double.NaN : vals.Average()));
            }
            groups.Add((metric, bars));
        }
        Plots.GroupedBars(groups, Path.Combine(root, "accuracy.png"), "Test accuracy: real data only vs PORT (mean over seeds)", "accuracy (%)");
        sb.AppendLine("![Test accuracy](accuracy.png)").AppendLine();
        sb.AppendLine("![Validation robust accuracy](validation.png)").AppendLine();
        if (noise.Count > 0) Certified(root, noise, sb);
        sb.AppendLine($"Rebuild this report: `proxyrobust report {root}`.");
        return sb.ToString();
    }

    /// <summary>Randomized smoothing: Gaussian-noise training without and with proxy images, certified l-2 accuracy.</summary>
    private static void Certified(string root, List<JsonObject> cells, StringBuilder sb)
    {
        var first = cells.Select(c => c["evaluation"]?["certify"]).FirstOrDefault(c => c is not null);
        sb.AppendLine("## Certified robustness (randomized smoothing)").AppendLine();
        if (first is null) { sb.AppendLine("(no certificates in this experiment)").AppendLine(); return; }
        sb.AppendLine($"Gaussian-noise training (sigma {(double)first["sigma"]!}) of the same architecture on the same real images, without and " +
                      $"with the proxy images; CERTIFY (Cohen et al. 2019) with n0 = {(int)first["n0"]!}, n = {(int)first["n"]!}, alpha = " +
                      $"{(double)first["alpha"]!} on the first {(int)first["points"]!} test points. With n = {(int)first["n"]!} no radius above " +
                      $"{F((double)first["sigma"]! * Certification.SmoothingStatistics.NormalQuantile(Math.Pow((double)first["alpha"]!, 1.0 / (int)first["n"]!)), 2)} " +
                      "can be certified.");
        sb.AppendLine();
        sb.AppendLine("| Model | Seed | Real | Proxy | Clean % (base, noise-trained) | Certified % r=0 | r=0.25 | r=0.5 | ACR |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        double[] Radii(JsonObject c) => c["evaluation"]?["certify"]?["radii"]?.AsArray().Select(r => r!.GetValue<double>()).ToArray() ?? [];
        double At(double[] radii, double r) => radii.Length == 0 ? double.NaN : 100.0 * radii.Count(x => x >= r) / radii.Length;
        foreach (var c in cells.OrderBy(c => Par(c, "seed")).ThenBy(c => Par(c, "synthetic")))
        {
            var radii = Radii(c);
            sb.AppendLine($"| {Model(c)} | {Par(c, "seed")} | {Par(c, "real")} | {Par(c, "synthetic")} | " +
                          $"{F(P(c["evaluation"]!["clean"]))} | {F(At(radii, 0))} | {F(At(radii, 0.25))} | {F(At(radii, 0.5))} | " +
                          $"{F(c["evaluation"]?["certify"]?["averageCertifiedRadius"]?.GetValue<double>() ?? double.NaN, 3)} |");
        }
        sb.AppendLine();
        foreach (var (seed, b, p) in Pairs(cells))
        {
            var (g, lo, hi) = Stats.PairedGain(Radii(b).Select(r => r >= 0.5).ToArray(), Radii(p).Select(r => r >= 0.5).ToArray());
            sb.AppendLine($"- seed {seed}, certified accuracy at r = 0.5: **{Signed(g)}** points (paired 95% CI {F(lo)} to {F(hi)}, n = {Radii(b).Length})");
        }
        sb.AppendLine();
        var grid = Enumerable.Range(0, 21).Select(k => k * 0.05).ToList();
        Plots.CertifiedAccuracy(cells.Select(c => ($"{Model(c)} (seed {Par(c, "seed")})",
                                                   (IReadOnlyList<(double, double)>)grid.Select(r => (r, At(Radii(c), r) / 100)).ToList())),
                                Path.Combine(root, "certified.png"));
        sb.AppendLine("![Certified accuracy](certified.png)").AppendLine();
    }

    private static string Sweep(string root, JsonObject exp, List<JsonObject> cells)
    {
        var sb = new StringBuilder(Header(exp, "Sample complexity: accuracy against the number of real and proxy images"));
        int planned = exp["planned"]?.AsArray().Count ?? cells.Count;
        if (cells.Count < planned) sb.AppendLine($"**Partial: {cells.Count} of {planned} cells finished.**").AppendLine();
        sb.AppendLine("| Real | Proxy | Gamma | Eps | Seed | Clean % | PGD-20 % | Best val. robust % | Train time |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        var ordered = cells.OrderBy(c => Par(c, "real")).ThenBy(c => Par(c, "synthetic")).ThenBy(c => ParD(c, "gamma"))
                           .ThenBy(c => ParD(c, "eps")).ThenBy(c => Par(c, "seed")).ToList();
        foreach (var c in ordered)
        {
            var e = c["evaluation"]!;
            var best = c["history"]?.AsArray().Max(h => h!["ValRobust"]?.GetValue<double>() ?? 0);
            sb.AppendLine($"| {Par(c, "real")} | {Par(c, "synthetic")} | {ParD(c, "gamma")} | {ParD(c, "eps")} | {Par(c, "seed")} | " +
                          $"{F(P(e["clean"]))} | {F(P(e["pgd20"]))} | {(best is { } b ? F(100 * b) : "-")} | {F(c["seconds"]?.GetValue<double>() ?? double.NaN, 0)} s |");
        }
        sb.AppendLine();
        // Each cell with proxy images against the real-only cell of the same real images, gamma, eps and seed.
        var pairs = (from c in ordered
                     where Par(c, "synthetic") > 0
                     let b = ordered.FirstOrDefault(o => Par(o, "synthetic") == 0 && Setting(o) == Setting(c))
                     where b is not null
                     select (Baseline: b, Port: c)).ToList();
        if (pairs.Count > 0)
        {
            sb.AppendLine("Gain over the real-only model with the same real images and seed, in points, with a 95% interval over the test " +
                          "points (paired: both models on the same points):").AppendLine();
            foreach (var (b, c) in pairs)
            {
                string Gain(string key)
                {
                    var (g, lo, hi) = Stats.PairedGain(Experiment.ParseBits((string?)b["evaluation"]![key]), Experiment.ParseBits((string?)c["evaluation"]![key]));
                    return $"{Signed(g)} ({F(lo)} to {F(hi)})";
                }
                sb.AppendLine($"- {Par(c, "real")} real + {Par(c, "synthetic")} proxy, seed {Par(c, "seed")}: PGD-20 **{Gain("pgd20Hits")}**, clean {Gain("cleanHits")}");
            }
            sb.AppendLine();
        }
        // One line per (real, gamma, eps), averaged over seeds, against the number of proxy images; gamma and eps are named
        // in the legend only when the sweep varies them.
        bool severalGammas = ordered.Select(c => ParD(c, "gamma")).Distinct().Count() > 1, severalEps = ordered.Select(c => ParD(c, "eps")).Distinct().Count() > 1;
        IReadOnlyList<(string, IReadOnlyList<(double, double)>)> Series(Func<JsonNode, double> metric) =>
            ordered.GroupBy(c => (Real: Par(c, "real"), Gamma: ParD(c, "gamma"), Eps: ParD(c, "eps")))
                   .Select(g => ($"{g.Key.Real} real" + (severalGammas ? $", gamma {g.Key.Gamma}" : "") + (severalEps ? $", eps {g.Key.Eps}" : ""),
                                 (IReadOnlyList<(double, double)>)g.GroupBy(c => Par(c, "synthetic")).OrderBy(s => s.Key)
                                     .Select(s => ((double)s.Key, s.Average(c => metric(c["evaluation"]!)))).ToList()))
                   .ToList();
        var robust = Series(e => P(e["pgd20"]));
        var clean = Series(e => P(e["clean"]));
        Plots.AgainstImageCount(robust, Path.Combine(root, "robust-vs-proxy.png"), "PGD-20 robust accuracy vs proxy images", "robust accuracy (%)");
        Plots.AgainstImageCount(clean, Path.Combine(root, "clean-vs-proxy.png"), "Clean accuracy vs proxy images", "clean accuracy (%)");
        Plots.Tradeoff(ordered.Select(c => ($"{Par(c, "real")}r+{Par(c, "synthetic")}p", P(c["evaluation"]!["clean"]), P(c["evaluation"]!["pgd20"]))).ToList(),
                       Path.Combine(root, "tradeoff.png"));
        sb.AppendLine("![Robust accuracy vs proxy images](robust-vs-proxy.png)").AppendLine();
        sb.AppendLine("![Clean accuracy vs proxy images](clean-vs-proxy.png)").AppendLine();
        sb.AppendLine("![Clean vs robust accuracy](tradeoff.png)").AppendLine();
        sb.AppendLine($"Rebuild this report: `proxyrobust report {root}`.");
        return sb.ToString();
    }
}
