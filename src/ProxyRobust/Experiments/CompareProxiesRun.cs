using System.Globalization;
using System.Text;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Proxy;

namespace ProxyRobust.Experiments;

/// <summary>
/// `compare-proxies`: for each proxy, PORT's robust-accuracy gain over the real-only baseline (the demo's cells, one
/// per proxy and seed, on the same real images and test points), its quality report (recognition, Fréchet distance,
/// precision/recall, conditional W1) in <see cref="Classifier"/>'s feature space, and its ARC; then how well each
/// metric
/// ranks the proxies by their gain. Every part is resumable and cached: a finished cell, report or discriminator is
/// never redone, so adding a proxy runs only its own parts.
/// </summary>
public sealed record CompareProxiesRequest
{
    public required IReadOnlyList<ArcProxy> Proxies { get; init; }

    /// <summary>A classifier trained on the real data: the feature space of the quality metrics.</summary>
    public required string Classifier { get; init; }
    public required string Output { get; init; }
    public string Command { get; init; } = "compare-proxies";
    public ExperimentSettings Settings { get; init; } = CompareProxiesRun.DefaultSettings;
    public int RealImages { get; init; } = 500;
    public IReadOnlyList<int> Seeds { get; init; } = [0];
    public double Epsilon { get; init; } = 0.1;
    public double Gamma { get; init; } = 0.5;
    public int QualityImages { get; init; } = 2000;
    public IReadOnlyList<double>? ArcBudgets { get; init; }
    public int ArcTrainPerSide { get; init; } = 1000;
    public int ArcTestPerSide { get; init; } = 500;
    public int ArcEpochs { get; init; } = 5;
    public string Device { get; init; } = "cpu";

    /// <summary>Adaptive sampling (optional): the proxy whose images PORT also draws by score, the best
    /// <see cref="AdaptiveFraction"/> by its ARC discriminator at the budget nearest <see cref="Epsilon"/>, against the
    /// same number drawn at random, on every seed.</summary>
    public string? AdaptiveProxy { get; init; }
    public double AdaptiveFraction { get; init; } = 0.5;
}

/// <summary>One proxy's row: PORT's gains over the baseline in percentage points (PGD-20 with its paired 95% interval,
/// clean), and its metrics.</summary>
public sealed record ProxyComparison(
    string Name,
    string Store,
    double Gain,
    double[] GainInterval95,
    double CleanGain,
    double Arc,
    double FrechetDistance,
    double MeanClassFrechetDistance,
    double Precision,
    double Recall,
    double? FeatureWasserstein,
    double? PixelWasserstein
);

/// <summary>How one metric ranks the proxies against their PORT gain: Spearman's rho, its exact two-sided p-value, and
/// the sign a useful metric should have (distances: negative, precision/recall: positive). Null where undefined (a
/// constant column, a missing value, more than 9 proxies for the exact p).</summary>
public sealed record MetricCorrelation(string Metric, double? Rho, double? PValue, int ExpectedSign);

/// <summary>Adaptive against uniform sampling of one proxy at the same number of images: PGD-20 and clean accuracy of
/// the top-fraction cells minus the random-fraction cells, in points, paired over every (seed, test point), with the
/// 95% interval of the robust difference and the difference per seed.</summary>
public sealed record AdaptiveComparison(
    string Proxy,
    double Fraction,
    double DiscriminatorEpsilon,
    double Difference,
    double[] DifferenceInterval95,
    double CleanDifference,
    IReadOnlyList<double> PerSeed
);

public sealed record CompareProxiesReport(
    IReadOnlyList<ProxyComparison> Proxies,
    IReadOnlyList<MetricCorrelation> Correlations,
    string Markdown,
    AdaptiveComparison? Adaptive = null
);

public static class CompareProxiesRun
{
    /// <summary>The demo's setting (500 real images, 40 epochs, validation on 250 points, PGD-20 on 1,000 test points)
    /// with PGD-10 training, without certification or AutoAttack (the gain compared is PGD-20's), and a peak learning
    /// rate of 0.05 after two epochs of warm-up. At the demo's 0.1 one of ten cells (held-out real, seed 1) fell to a
    /// constant predictor at epoch 3 and never recovered; with two epochs of warm-up two of fifteen did (the baseline
    /// of seed 1, held-out real of seed 2) when the rate reached its peak. A fallen cell counts as a loss or a gain of
    /// its proxy that has nothing to do with the proxy. Both fallen cells trained through at 0.05.</summary>
    public static ExperimentSettings DefaultSettings =>
        new()
        {
            Epochs = 40,
            LearningRate = 0.05,
            WarmupEpochs = 2,
            AttackSteps = 10,
            ValSize = 250,
            EvalPoints = 1000,
        };

    /// <summary>Runs the comparison. Under MPI (<paramref name="ranks"/> of more than one) the ranks split the PORT
    /// cells, each cell in one rank as a single run would; rank 0 then does the rest (quality, ARC, adaptive
    /// sampling, report) and returns the report; the other ranks return null.</summary>
    public static CompareProxiesReport? Execute(
        CompareProxiesRequest r,
        IExperimentObserver? observer = null,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        if (r.Proxies.Count < 2)
            throw new ArgumentException("comparing proxies needs at least two");
        if (r.Proxies.Select(p => p.Name).Distinct().Count() != r.Proxies.Count)
            throw new ArgumentException("proxy names must differ");
        Directory.CreateDirectory(r.Output);
        void Log(string m)
        {
            Experiment.Log(r.Output, m);
            observer?.Log(m);
        }

        if (job.IsRoot)
            r = r with { Proxies = r.Proxies.Select(p => MaterialiseHeldOut(r, p)).ToList() };
        job.Barrier(); // rank 0 has written the held-out stores
        if (!job.IsRoot)
            r = r with { Proxies = r.Proxies.Select(p => MaterialiseHeldOut(r, p)).ToList() }; // now only reads

        // 1. PORT with each proxy against the baseline, as demo cells (the standard report works on the folder too)
        var cells = new List<ExperimentCell>();
        foreach (var seed in r.Seeds)
        {
            cells.Add(new ExperimentCell($"baseline-s{seed}", r.RealImages, 0, r.Gamma, r.Epsilon, seed));
            foreach (var p in r.Proxies)
            {
                int count;
                using (var store = DatasetLoader.Load(p.Store, Split.Train, p.Labels))
                    count = store.Count;
                cells.Add(
                    new ExperimentCell(
                        $"{Safe(p.Name)}-s{seed}",
                        r.RealImages,
                        count,
                        r.Gamma,
                        r.Epsilon,
                        seed,
                        ProxyName: p.Name,
                        ProxyStore: p.Store
                    )
                );
            }
        }
        var records = ExperimentRunner.RunShares(
            new ExperimentPlan(r.Output, Demo.Kind, r.Command, r.Settings, cells),
            cells,
            observer ?? SilentObserver.Instance,
            cancel,
            job
        );
        if (records is null)
            return null; // rank 0 does the rest
        ExperimentReport.Write(r.Output);

        // 2. quality of each store in the real-data classifier's feature space
        var quality = new Dictionary<string, SyntheticReport>();
        foreach (var p in r.Proxies)
        {
            var dir = Path.Combine(r.Output, "quality", Safe(p.Name));
            var json = Path.Combine(dir, "report.json");
            if (File.Exists(json))
                quality[p.Name] = JsonFiles.Read<SyntheticReport>(json);
            else
            {
                Log($"{p.Name}: quality report");
                quality[p.Name] = SyntheticReportRun.Execute(
                    new SyntheticReportRequest(
                        p.Store,
                        r.Classifier,
                        dir,
                        r.Settings.Data,
                        p.Labels,
                        r.QualityImages,
                        Device: r.Device
                    )
                );
            }
        }

        // 3. ARC (its discriminators are cached by content)
        Log("ARC");
        var arc = ArcRun.Execute(
            new ArcRequest
            {
                Real = r.Settings.Data,
                Proxies = r.Proxies,
                Output = Path.Combine(r.Output, "arc"),
                Budgets = r.ArcBudgets,
                TrainPerSide = r.ArcTrainPerSide,
                TestPerSide = r.ArcTestPerSide,
                Epochs = r.ArcEpochs,
                Device = r.Device,
            },
            cancel: cancel
        );

        // 4. adaptive sampling (optional): the proxy's images drawn by how real its robust discriminator finds them
        AdaptiveComparison? adaptive = null;
        if (r.AdaptiveProxy is { } adaptiveName)
            adaptive = RunAdaptive(r, adaptiveName, arc, cells, records, Log, observer, cancel);

        // 5. gains (pooled over seeds: paired on every (seed, test point)) and the table
        bool[] Hits(CellRecord c) => Bits.Parse(c.Evaluation.Pgd20Hits ?? "");
        bool[] Clean(CellRecord c) => Bits.Parse(c.Evaluation.CleanHits);
        var baselines = records.Where(c => c.Parameters.Proxy is null).OrderBy(c => c.Parameters.Seed).ToList();
        var comparisons = new List<ProxyComparison>();
        foreach (var p in r.Proxies)
        {
            var mine = records
                .Where(c => c.Parameters.Proxy == p.Name && c.Parameters.Selection is null)
                .OrderBy(c => c.Parameters.Seed)
                .ToList();
            var (gain, low, high) = Stats.PairedGain(
                baselines.SelectMany(Hits).ToArray(),
                mine.SelectMany(Hits).ToArray()
            );
            var (cleanGain, _, _) = Stats.PairedGain(
                baselines.SelectMany(Clean).ToArray(),
                mine.SelectMany(Clean).ToArray()
            );
            var q = quality[p.Name].Store;
            comparisons.Add(
                new ProxyComparison(
                    p.Name,
                    p.Store,
                    gain,
                    [low, high],
                    cleanGain,
                    arc.Proxies.Single(a => a.Name == p.Name).Arc,
                    q.FrechetDistance,
                    q.MeanClassFrechetDistance,
                    q.Precision,
                    q.Recall,
                    q.FeatureWasserstein?.Mean,
                    q.PixelWasserstein?.Mean
                )
            );
        }
        var gains = comparisons.Select(c => c.Gain).ToList();
        MetricCorrelation Correlate(string metric, Func<ProxyComparison, double?> value, int sign)
        {
            var values = comparisons.Select(c => value(c) ?? double.NaN).ToList();
            if (values.Concat(gains).Any(v => !double.IsFinite(v)))
                return new MetricCorrelation(metric, null, null, sign);
            double rho = RankCorrelation.Spearman(values, gains);
            double p = comparisons.Count <= 9 ? RankCorrelation.ExactPValue(values, gains) : double.NaN;
            return new MetricCorrelation(
                metric,
                double.IsFinite(rho) ? rho : null,
                double.IsFinite(p) ? p : null,
                sign
            );
        }
        var correlations = new List<MetricCorrelation>
        {
            Correlate("ARC", c => c.Arc, -1),
            Correlate("Fréchet distance", c => c.FrechetDistance, -1),
            Correlate("per-class Fréchet distance", c => c.MeanClassFrechetDistance, -1),
            Correlate("precision", c => c.Precision, +1),
            Correlate("recall", c => c.Recall, +1),
            Correlate("W1, feature space", c => c.FeatureWasserstein, -1),
            Correlate("W1, pixel space", c => c.PixelWasserstein, -1),
        };
        var markdown = Path.Combine(r.Output, "compare.md");
        var report = new CompareProxiesReport(comparisons, correlations, markdown, adaptive);
        AtomicFile.WriteAllText(markdown, Render(r, report, records));
        JsonFiles.Write(Path.Combine(r.Output, "compare.json"), report);
        return report;
    }

    /// <summary>
    /// Scores the proxy's images with its ARC discriminator at the budget nearest the training epsilon (once, to
    /// OUT/adaptive/NAME.scores.npy), runs a top:F and a random:F cell per seed (the same number of images, chosen by
    /// score or not at all), and pairs them.
    /// </summary>
    private static AdaptiveComparison RunAdaptive(
        CompareProxiesRequest r,
        string name,
        ArcReport arc,
        List<ExperimentCell> cells,
        List<CellRecord> records,
        Action<string> log,
        IExperimentObserver? observer,
        CancellationToken cancel
    )
    {
        var proxy =
            r.Proxies.SingleOrDefault(p => p.Name == name)
            ?? throw new ArgumentException($"adaptive sampling: no proxy named '{name}'");
        var point = arc
            .Proxies.Single(a => a.Name == name)
            .Points.Where(p => p.Epsilon > 0)
            .MinBy(p => Math.Abs(p.Epsilon - r.Epsilon))!;
        var scores = Path.Combine(r.Output, "adaptive", Safe(name) + ".scores.npy");
        if (!File.Exists(scores))
        {
            log($"{name}: scoring its images with the ARC discriminator at eps {point.Epsilon.ToString(Inv)}");
            ScoreRun.Execute(
                new ScoreRequest(Path.Combine(point.Folder, "final.json"), proxy.Store, scores, proxy.Labels)
                {
                    Device = r.Device,
                }
            );
        }
        var f = r.AdaptiveFraction.ToString(Inv);
        int count = cells.First(c => c.ProxyName == name).SyntheticImages;
        var added = r
            .Seeds.SelectMany(seed =>
                new[] { ("top", scores), ("random", (string?)null) }.Select(kind => new ExperimentCell(
                    $"{Safe(name)}-{kind.Item1}-s{seed}",
                    r.RealImages,
                    count,
                    r.Gamma,
                    r.Epsilon,
                    seed,
                    ProxyName: name,
                    ProxyStore: proxy.Store,
                    Selection: $"{kind.Item1}:{f}",
                    Scores: kind.Item2
                ))
            )
            .ToList();
        cells.AddRange(added);
        foreach (var cell in added)
        {
            cancel.ThrowIfCancellationRequested();
            records.Add(
                observer is null
                    ? Experiment.RunCell(r.Output, r.Settings, cell, log, cancel: cancel)
                    : observer.Cell(
                        cell.Name,
                        (train, eval) => Experiment.RunCell(r.Output, r.Settings, cell, log, train, cancel, eval)
                    )
            );
            Experiment.Save(r.Output, Demo.Kind, r.Command, r.Settings, cells, records);
        }
        ExperimentReport.Write(r.Output);
        List<CellRecord> Of(string kind) =>
            records
                .Where(c => c.Parameters.Proxy == name && c.Parameters.Selection == $"{kind}:{f}")
                .OrderBy(c => c.Parameters.Seed)
                .ToList();
        var (top, random) = (Of("top"), Of("random"));
        bool[] Robust(CellRecord c) => Bits.Parse(c.Evaluation.Pgd20Hits ?? "");
        bool[] Clean(CellRecord c) => Bits.Parse(c.Evaluation.CleanHits);
        var (d, low, high) = Stats.PairedGain(random.SelectMany(Robust).ToArray(), top.SelectMany(Robust).ToArray());
        var (clean, _, _) = Stats.PairedGain(random.SelectMany(Clean).ToArray(), top.SelectMany(Clean).ToArray());
        var perSeed = top.Zip(random, (t, u) => Stats.PairedGain(Robust(u), Robust(t)).Gain).ToList();
        return new AdaptiveComparison(name, r.AdaptiveFraction, point.Epsilon, d, [low, high], clean, perSeed);
    }

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>
    /// A "holdout:COUNT" proxy becomes a store file in OUT/stores/ holding exactly the held-out real images the demo's
    /// PORT cell would draw (the training images the cells' real subset and validation set leave unused), so that the
    /// quality report and ARC measure the same images PORT trains on. Written once; other proxies pass through.
    /// </summary>
    private static ArcProxy MaterialiseHeldOut(CompareProxiesRequest r, ArcProxy p)
    {
        const string prefix = "holdout:";
        if (!p.Store.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            return p;
        if (!int.TryParse(p.Store[prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int count))
            throw new ArgumentException($"proxy '{p.Store}': expected holdout:N with N > 0");
        var stem = Path.Combine(r.Output, "stores", Safe(p.Name));
        string images = stem + ".npy",
            labels = stem + ".labels.npy";
        if (!File.Exists(images) || !File.Exists(labels))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(stem)!);
            using var full = DatasetLoader.Load(r.Settings.Data, Split.Train);
            var (_, _, unused) = TrainRun.RealSplits(full, r.Settings.ValSize, r.RealImages, dataSeed: 0);
            if (count < 1 || count > unused.Count)
                throw new ArgumentException(
                    $"proxy '{p.Store}': {unused.Count} real training images are left for a held-out proxy"
                );
            // each file written whole (temporary, then renamed); a kill between the two leaves no labels: redone
            NpyDataset.Write(TrainRun.HeldOutProxy(unused, count, dataSeed: 0), images, labels);
        }
        return p with { Store = images, Labels = labels };
    }

    private static string Safe(string name) =>
        string.Concat(name.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '_'));

    private static string Render(CompareProxiesRequest r, CompareProxiesReport report, List<CellRecord> records)
    {
        var c = CultureInfo.InvariantCulture;
        string F(double? v, string format = "F2") => v is { } x && double.IsFinite(x) ? x.ToString(format, c) : "-";
        var sb = new StringBuilder();
        sb.AppendLine("# Which proxy helps robustness most");
        sb.AppendLine();
        sb.AppendLine(
            $"Command: `{r.Command}`. PORT (PGD-{r.Settings.AttackSteps} training, eps {r.Epsilon.ToString(c)}, "
                + $"{r.Settings.Epochs} epochs over {r.RealImages} real images, gamma {r.Gamma.ToString(c)}) with each "
                + $"proxy against the real-only baseline, seeds {string.Join(", ", r.Seeds)}, on the same "
                + $"{r.Settings.EvalPoints} test points (PGD-20); the gain is paired over every (seed, test point). "
                + $"Quality in the feature space of `{r.Classifier}` on {r.QualityImages} images per side; ARC with "
                + $"{r.ArcTrainPerSide} + {r.ArcTestPerSide} images per side and {r.ArcEpochs} epochs per "
                + "discriminator (arc/arc.md). Per-cell results: report.md."
        );
        sb.AppendLine();
        sb.AppendLine(
            "| proxy | PGD-20 gain, points (95% CI) | clean gain | ARC | FD | per-class FD | precision | recall | "
                + "W1 features | W1 pixels |"
        );
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var p in report.Proxies.OrderByDescending(p => p.Gain))
            sb.AppendLine(
                $"| {p.Name} | {F(p.Gain, "+0.0;-0.0")} ({F(p.GainInterval95[0], "F1")} to "
                    + $"{F(p.GainInterval95[1], "F1")}) | {F(p.CleanGain, "+0.0;-0.0")} | {F(p.Arc, "F3")} | "
                    + $"{F(p.FrechetDistance)} | {F(p.MeanClassFrechetDistance)} | {F(p.Precision, "F3")} | "
                    + $"{F(p.Recall, "F3")} | {F(p.FeatureWasserstein, "F3")} | {F(p.PixelWasserstein, "F3")} |"
            );
        int classes;
        using (var test = DatasetLoader.Load(r.Settings.Data, Split.Test))
            classes = test.NumClasses;
        // a run that fell to a constant predictor measures its training's failure, not its proxy's value
        var atChance = records.Where(x => x.Evaluation.Clean < 1.5 / classes).ToList();
        if (atChance.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine(
                "**Diverged:** "
                    + string.Join(", ", atChance.Select(x => $"{x.Name} (clean {F(100 * x.Evaluation.Clean, "F1")}%)"))
                    + $" ended near chance ({F(100.0 / classes, "F0")}%); the gains above count "
                    + (atChance.Count == 1 ? "it" : "them")
                    + " as they are. Rerun with more --warmup-epochs or other seeds."
            );
        }
        sb.AppendLine();
        sb.AppendLine(
            $"Spearman's rank correlation of each metric with the PGD-20 gain over these {report.Proxies.Count} "
                + "proxies, with its exact two-sided permutation p-value (all orderings enumerated; with k proxies "
                + "the smallest possible p is 2/k!, so with 4 proxies no correlation can reach p < 0.05):"
        );
        sb.AppendLine();
        sb.AppendLine("| metric | rho | exact p | a useful metric's sign | ranks the proxies as the gain does? |");
        sb.AppendLine("|---|---|---|---|---|");
        var byGain = report.Proxies.OrderByDescending(p => p.Gain).Select(p => p.Name).ToList();
        foreach (var m in report.Correlations)
        {
            string agrees =
                m.Rho is not { } rho ? "-"
                : Math.Abs(rho - m.ExpectedSign) < 1e-9 ? "yes, exactly"
                : Math.Sign(rho) == m.ExpectedSign ? "in tendency"
                : "no";
            sb.AppendLine(
                $"| {m.Metric} | {F(m.Rho, "+0.00;-0.00")} | {F(m.PValue, "F3")} | "
                    + $"{(m.ExpectedSign < 0 ? "negative" : "positive")} | {agrees} |"
            );
        }
        sb.AppendLine();
        sb.AppendLine($"Ranked by gain: {string.Join(" > ", byGain)}.");
        foreach (
            var (metric, order) in new (string, IEnumerable<string>)[]
            {
                ("ARC", report.Proxies.OrderBy(p => p.Arc).Select(p => p.Name)),
                ("Fréchet distance", report.Proxies.OrderBy(p => p.FrechetDistance).Select(p => p.Name)),
            }
        )
        {
            var list = order.ToList();
            var disagree = byGain.Where((name, i) => list[i] != name).ToList();
            sb.AppendLine(
                $"Ranked by {metric}: {string.Join(" > ", list)}"
                    + (disagree.Count == 0 ? " (the gain's order)." : $" (differs at {string.Join(", ", disagree)}).")
            );
        }
        if (report.Adaptive is { } a)
        {
            sb.AppendLine();
            sb.AppendLine("## Adaptive against uniform sampling");
            sb.AppendLine();
            sb.AppendLine(
                $"PORT with `{a.Proxy}`, drawing only the {F(100 * a.Fraction, "F0")}% of its images that its ARC "
                    + $"discriminator (PGD-trained at eps {F(a.DiscriminatorEpsilon, "0.###")}) finds most real "
                    + $"(top:{F(a.Fraction, "0.###")}), against the same number drawn at random (random:"
                    + $"{F(a.Fraction, "0.###")}, a different subset per seed): PGD-20 "
                    + $"**{F(a.Difference, "+0.0;-0.0")}** points (paired 95% CI {F(a.DifferenceInterval95[0], "F1")} "
                    + $"to {F(a.DifferenceInterval95[1], "F1")} over every seed and test point; per seed "
                    + $"{string.Join(", ", a.PerSeed.Select(x => F(x, "+0.0;-0.0")))}), clean "
                    + $"{F(a.CleanDifference, "+0.0;-0.0")}. The interval covers the test points only; the spread "
                    + "over seeds shows the training randomness."
            );
        }
        return sb.ToString();
    }
}
