using System.CommandLine;
using System.Globalization;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

/// <summary>`compare-proxies`: PORT's gain per proxy beside ARC, Fréchet distance, precision/recall and W1, and how
/// well each metric ranks the proxies.</summary>
internal static class CompareProxiesCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var (synthetic, names) = Shared.ProxyOptions(
            "proxy stores to compare (at least two); holdout:N for N held-out real training images (an ideal proxy)"
        );
        var classifier = new Option<string>("--classifier")
        {
            Description = "a classifier trained on the real data (feature space of the quality metrics)",
            Required = true,
        };
        var output = new Option<string>("--out") { Description = "experiment folder (resumable)", Required = true };
        var real = new Option<int>("--real-images")
        {
            Description = "real training images of every PORT run",
            DefaultValueFactory = _ => 500,
        }.Positive();
        var seeds = new Option<string>("--seeds")
        {
            Description = "training seeds, comma-separated",
            DefaultValueFactory = _ => "0",
        };
        var epochs = new Option<int>("--epochs")
        {
            Description = "epochs over the real images (as the demo)",
            DefaultValueFactory = _ => 40,
        }.Positive();
        var lr = new Option<double>("--lr")
        {
            Description = "peak learning rate of every PORT run (cosine schedule)",
            DefaultValueFactory = _ => CompareProxiesRun.DefaultSettings.LearningRate,
        }.Positive();
        var warmup = new Option<double>("--warmup-epochs")
        {
            Description = "epochs of linear learning-rate warm-up before the cosine decay",
            DefaultValueFactory = _ => CompareProxiesRun.DefaultSettings.WarmupEpochs,
        }.NonNegative();
        var arcEpochs = new Option<int>("--arc-epochs")
        {
            Description = "epochs of each ARC discriminator",
            DefaultValueFactory = _ => 5,
        }.Positive();
        var adaptive = new Option<string?>("--adaptive")
        {
            Description =
                "adaptive sampling: also train PORT with this proxy's images drawn by score (the best "
                + "--adaptive-fraction by its ARC discriminator) and with as many drawn at random, and compare",
        };
        var adaptiveFraction = new Option<double>("--adaptive-fraction")
        {
            Description = "fraction of the proxy's images adaptive sampling keeps",
            DefaultValueFactory = _ => 0.5,
        }.Between(0, 1, open: true);
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "compare-proxies",
            "For each proxy: PORT's robust-accuracy gain over the real-only baseline, its quality metrics and ARC; "
                + "then each metric's rank correlation with the gain (resumable)."
        )
        {
            synthetic,
            names,
            classifier,
            output,
            real,
            seeds,
            epochs,
            lr,
            warmup,
            arcEpochs,
            adaptive,
            adaptiveFraction,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var proxies = Shared.Proxies(p.GetValue(synthetic)!, p.GetValue(names));
                if (p.GetValue(adaptive) is { } chosen && proxies.All(x => x.Name != chosen))
                    throw new UsageException(
                        $"--adaptive {chosen}: no such proxy (names: {string.Join(", ", proxies.Select(x => x.Name))})"
                    );
                var seedList = new List<int>();
                foreach (var part in p.GetValue(seeds)!.Split(',', StringSplitOptions.TrimEntries))
                    seedList.Add(
                        int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v)
                            ? v
                            : throw new UsageException($"--seeds takes integers separated by commas, not '{part}'")
                    );
                var request = new CompareProxiesRequest
                {
                    Proxies = proxies,
                    Classifier = p.GetValue(classifier)!,
                    Output = p.GetValue(output)!,
                    Command = "proxyrobust " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
                    RealImages = p.GetValue(real),
                    Seeds = seedList,
                    Settings = CompareProxiesRun.DefaultSettings with
                    {
                        Epochs = p.GetValue(epochs),
                        LearningRate = p.GetValue(lr),
                        WarmupEpochs = p.GetValue(warmup),
                        Threads = p.GetValue(threads),
                    },
                    ArcEpochs = p.GetValue(arcEpochs),
                    AdaptiveProxy = p.GetValue(adaptive),
                    AdaptiveFraction = p.GetValue(adaptiveFraction),
                    Device = p.GetValue(device)!,
                };
                // under mpiexec the ranks split the PORT cells; rank 0 does the rest and reports
                using var ranks = Shared.StartRanks();
                Shared.StartTorch(p.GetValue(threads), ranks);
                if (!ranks.Ranks.IsRoot)
                {
                    CompareProxiesRun.Execute(request, SilentObserver.Instance, cancel, ranks.Ranks);
                    return ExitCodes.Ok;
                }
                var report = CompareProxiesRun.Execute(
                    request,
                    new ProgressView.ExperimentView(),
                    cancel,
                    ranks.Ranks
                )!;
                Shared.Table(
                    "PORT gain (PGD-20, points) and ARC per proxy",
                    report
                        .Proxies.OrderByDescending(x => x.Gain)
                        .Select(x => (x.Name, $"{x.Gain:+0.0;-0.0} (ARC {x.Arc:F3}, FD {x.FrechetDistance:F2})"))
                        .Concat(
                            report.Adaptive is { } a
                                ? [($"{a.Proxy}: top vs random", $"{a.Difference:+0.0;-0.0} points PGD-20")]
                                : Array.Empty<(string, string)>()
                        )
                        .Append(("report", report.Markdown))
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
