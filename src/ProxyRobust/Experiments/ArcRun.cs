using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using ProxyRobust.Attacks;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Proxy;
using ProxyRobust.Reporting;
using ProxyRobust.Training;

namespace ProxyRobust.Experiments;

/// <summary>A proxy to rank: a name and a store (images .npy / .bin with labels beside it, or any data set the tool
/// reads).</summary>
public sealed record ArcProxy(string Name, string Store, string? Labels = null);

/// <summary>
/// ARC of several proxies against one real data set: for each proxy and budget, a real-vs-synthetic discriminator
/// trained adversarially at that budget on <see cref="TrainPerSide"/> images of each side and tested (PGD-20 at the
/// same budget) on <see cref="TestPerSide"/> others. Discriminators live in OUT/discriminators/, named by the hash of
/// their data and settings, so a finished one is reused and a killed one resumes; adding a proxy trains only its own.
/// </summary>
public sealed record ArcRequest
{
    public string? Real { get; init; }
    public required IReadOnlyList<ArcProxy> Proxies { get; init; }
    public required string Output { get; init; }

    /// <summary>Budgets, increasing from 0; null: 0 to 0.2 for 28x28 gray images (twice the usual 0.1, as 16/255 is
    /// twice CIFAR-10's 8/255), 0 to 16/255 otherwise (l-inf); l-2: 0 to 3.0 / 1.0.</summary>
    public IReadOnlyList<double>? Budgets { get; init; }
    public Norm Norm { get; init; } = Norm.Linf;
    public int TrainPerSide { get; init; } = 2000;
    public int TestPerSide { get; init; } = 1000;
    public int Epochs { get; init; } = 10;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 0.1;
    public string Arch { get; init; } = "small-cnn";
    public int Seed { get; init; }
    public string Device { get; init; } = "cpu";
}

/// <summary>One discriminator's result: <see cref="Measured"/> is its robust test accuracy (Wilson interval beside it),
/// <see cref="Accuracy"/> what ARC integrates, the better of it and the constant discriminator's 0.5.</summary>
public sealed record ArcPoint(
    double Epsilon,
    double Accuracy,
    double Measured,
    double[] MeasuredWilson95,
    int Points,
    string Folder
);

public sealed record ArcProxyResult(
    string Name,
    string Store,
    string DataSha256,
    IReadOnlyList<ArcPoint> Points,
    double Arc
);

public sealed record ArcReport(
    string Real,
    string Norm,
    IReadOnlyList<double> Budgets,
    int TrainPerSide,
    int TestPerSide,
    IReadOnlyList<ArcProxyResult> Proxies,
    string Markdown,
    string Plot
);

public static class ArcRun
{
    public static IReadOnlyList<double> DefaultBudgets(Norm norm, int height, int width, int channels)
    {
        bool small = height * width * channels <= 28 * 28;
        double top = norm == Norm.Linf ? (small ? 0.2 : 16 / 255.0) : (small ? 3.0 : 1.0);
        return [0, top / 8, top / 4, top / 2, 3 * top / 4, top];
    }

    public static ArcReport Execute(
        ArcRequest r,
        IProgress<(string Phase, int Done, int Total)>? progress = null,
        CancellationToken cancel = default
    )
    {
        if (r.Proxies.Count == 0)
            throw new ArgumentException("no proxies to rank");
        if (r.Proxies.Select(p => p.Name).Distinct().Count() != r.Proxies.Count)
            throw new ArgumentException("proxy names must differ");
        using var realTrain = DatasetLoader.Load(r.Real, Split.Train);
        using var realTest = DatasetLoader.Load(r.Real, Split.Test, classes: realTrain.NumClasses);
        var budgets = r.Budgets ?? DefaultBudgets(r.Norm, realTrain.Height, realTrain.Width, realTrain.Channels);
        if (budgets.Count < 2 || budgets[0] != 0 || budgets.Zip(budgets.Skip(1)).Any(p => !(p.Second > p.First)))
            throw new ArgumentException("budgets must start at 0 and increase, at least two of them");
        Directory.CreateDirectory(r.Output);
        int total = r.Proxies.Count * budgets.Count,
            done = 0;
        var results = new List<ArcProxyResult>();
        foreach (var proxy in r.Proxies)
        {
            using var store = DatasetLoader.Load(proxy.Store, Split.Train, proxy.Labels, realTrain.NumClasses);
            if (store.Count < r.TrainPerSide + r.TestPerSide)
                throw new DataFormatException(
                    store.Source,
                    $"{store.Count} images, fewer than {r.TrainPerSide} + {r.TestPerSide} for training and testing"
                );
            // disjoint synthetic images for training and testing; the real test images come from the test split
            var (storeTrain, storeRest) = store.Split(r.TrainPerSide, Seeds.Derive(r.Seed, 0xA5C));
            using (storeTrain)
            using (storeRest)
            {
                var dataDir = Path.Combine(r.Output, "data");
                var trainPath = Path.Combine(dataDir, $"{Safe(proxy.Name)}-train.npy");
                var testPath = Path.Combine(dataDir, $"{Safe(proxy.Name)}-test.npy");
                var trainHash = DiscriminationData.Write(realTrain, storeTrain, r.TrainPerSide, r.Seed, trainPath);
                var testHash = DiscriminationData.Write(realTest, storeRest, r.TestPerSide, r.Seed + 1, testPath);
                var dataHash = Hash(trainHash + testHash);
                var points = new List<ArcPoint>();
                foreach (var eps in budgets)
                {
                    cancel.ThrowIfCancellationRequested();
                    const string phase = "discriminators";
                    progress?.Report((phase, done, total));
                    // reported again after every epoch, so that a long discriminator still shows the run is alive
                    int finished = done;
                    var epochs = progress is null
                        ? null
                        : new Reporter<TrainProgress>(_ => progress.Report((phase, finished, total)));
                    points.Add(Discriminator(r, eps, dataHash, trainPath, testPath, epochs, cancel));
                    progress?.Report((phase, ++done, total));
                }
                results.Add(
                    new ArcProxyResult(
                        proxy.Name,
                        store.Source,
                        dataHash,
                        points,
                        Arc.Area(budgets, points.Select(p => p.Accuracy).ToList())
                    )
                );
            }
        }
        var plot = Path.Combine(r.Output, "arc.png");
        Plots.Curves(
            results.Select(p =>
                (
                    $"{p.Name} (ARC {p.Arc.ToString("F3", CultureInfo.InvariantCulture)})",
                    (IReadOnlyList<(double, Estimate)>)
                        p
                            .Points.Select(q =>
                                (
                                    q.Epsilon,
                                    new Estimate(
                                        100 * q.Measured,
                                        100 * q.MeasuredWilson95[0],
                                        100 * q.MeasuredWilson95[1]
                                    )
                                )
                            )
                            .ToList()
                )
            ),
            plot,
            "Robust real-vs-synthetic discrimination",
            $"{r.Norm.ToString().ToLowerInvariant()} budget eps",
            "robust discrimination accuracy % (95% CI)"
        );
        var report = new ArcReport(
            realTrain.Source,
            r.Norm.ToString().ToLowerInvariant(),
            budgets,
            r.TrainPerSide,
            r.TestPerSide,
            results,
            Path.Combine(r.Output, "arc.md"),
            plot
        );
        AtomicFile.WriteAllText(report.Markdown, Render(report));
        JsonFiles.Write(Path.Combine(r.Output, "arc.json"), report);
        return report;
    }

    /// <summary>One discriminator: reused when its folder holds a result, resumed when it holds a checkpoint.</summary>
    private static ArcPoint Discriminator(
        ArcRequest r,
        double eps,
        string dataHash,
        string trainPath,
        string testPath,
        IProgress<TrainProgress>? progress,
        CancellationToken cancel
    )
    {
        var settings =
            $"{dataHash}|{r.Norm}|{Num(eps)}|{r.Epochs}|{r.BatchSize}|{Num(r.LearningRate)}|{r.Arch}|{r.Seed}";
        var folder = Path.Combine(
            r.Output,
            "discriminators",
            $"{Hash(settings)[..16]}-{r.Norm.ToString().ToLowerInvariant()}-{Num(eps)}"
        );
        var resultPath = Path.Combine(folder, TrainRunRecord.FileName);
        if (!File.Exists(resultPath))
        {
            var config = new TrainRunConfig
            {
                Data = trainPath,
                EvalData = testPath,
                Classes = 2,
                Arch = r.Arch,
                Method = eps == 0 ? TrainMethod.Standard : TrainMethod.Pgd,
                Norm = r.Norm,
                Epsilon = eps == 0 ? null : eps,
                OutputDir = folder,
                Resume = Directory.Exists(folder),
                Options = new TrainOptions
                {
                    Epochs = r.Epochs,
                    BatchSize = r.BatchSize,
                    LearningRate = r.LearningRate,
                    Seed = r.Seed,
                    Device = r.Device,
                },
            };
            TrainRun.Execute(config, progress, cancel);
        }
        var record = JsonFiles.Read<TrainRunRecord>(resultPath);
        var last =
            record.Test.Last ?? throw new DataFormatException(resultPath, "holds no test result of the discriminator");
        bool robust = eps > 0;
        double measured = robust ? last.Robust ?? double.NaN : last.Clean;
        var wilson = robust ? last.RobustWilson95 ?? [double.NaN, double.NaN] : last.CleanWilson95;
        // A constant prediction is untouched by any attack and scores 0.5 on the balanced test set, so the best robust
        // discrimination accuracy is at least 0.5. A trained discriminator that cannot tell the sides apart is driven
        // below that by the attack (near 0 for real against real); that measures the attack, not the proxy.
        return new ArcPoint(eps, Math.Max(measured, ChanceLevel), measured, wilson, last.Points, folder);
    }

    /// <summary>The accuracy of a constant discriminator on the balanced test set.</summary>
    public const double ChanceLevel = 0.5;

    private static string Num(double v) => v.ToString("0.#####", CultureInfo.InvariantCulture);

    private static string Safe(string name) =>
        string.Concat(name.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '_'));

    private static string Hash(string text) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    private static string Render(ArcReport r)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# ARC: robust discrimination of proxies from real data");
        sb.AppendLine();
        sb.AppendLine(
            $"Real data: `{r.Real}`. For each proxy and {r.Norm} budget, a real-vs-synthetic discriminator "
                + $"trained with PGD-10 at that budget on {r.TrainPerSide:N0} images of each side, tested with PGD-20 "
                + $"at the same budget on {r.TestPerSide:N0} other images of each side (real ones from the test "
                + "split). ARC is the area under "
                + "max(accuracy, 0.5) against eps / eps_max (trapezoid rule; 0.5 is what a constant prediction scores "
                + "under any attack): 0.5 is a proxy the discriminators cannot tell from real data, 1 one they always "
                + "tell apart. Lower is closer. The table gives the measured accuracies."
        );
        sb.AppendLine();
        sb.Append("| rank | proxy | ARC |");
        foreach (var e in r.Budgets)
            sb.Append($" eps {e.ToString("0.###", c)} |");
        sb.AppendLine();
        sb.AppendLine("|---|---|---|" + string.Concat(r.Budgets.Select(_ => "---|")));
        int rank = 1;
        foreach (var p in r.Proxies.OrderBy(p => p.Arc))
        {
            sb.Append($"| {rank++} | {p.Name} | {p.Arc.ToString("F3", c)} |");
            foreach (var q in p.Points)
                sb.Append($" {(100 * q.Measured).ToString("F1", c)} |");
            sb.AppendLine();
        }
        sb.AppendLine();
        sb.AppendLine(
            "Accuracies in %, each on " + $"{2 * r.TestPerSide:N0} test images (Wilson intervals in arc.json)."
        );
        sb.AppendLine();
        sb.AppendLine($"![robust discrimination accuracy]({Path.GetFileName(r.Plot)})");
        return sb.ToString();
    }
}
