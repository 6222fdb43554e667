using ProxyRobust.Attacks;
using ProxyRobust.Core;
using ProxyRobust.Generative;
using ProxyRobust.Training;

namespace ProxyRobust.Experiments;

/// <summary>An experiment to run: its folder, its kind ("port-demo", "sweep"), the command that asked for it, settings,
/// cells.</summary>
public sealed record ExperimentPlan(
    string Root,
    string Kind,
    string Command,
    ExperimentSettings Settings,
    IReadOnlyList<ExperimentCell> Cells
);

/// <summary>
/// How a running experiment reports: log lines (also appended to log.txt), and each cell's work run under the observer,
/// which shows its training and evaluation progress however it likes (the CLI: bars on a terminal, lines in a log).
/// </summary>
public interface IExperimentObserver
{
    void Log(string message);

    T Cell<T>(string name, Func<IProgress<TrainProgress>, IProgress<(string Phase, int Done, int Total)>, T> work);
}

/// <summary>What a run of an experiment leaves: the finished cells (of all workers sharing the folder) and the
/// report.</summary>
public sealed record ExperimentOutcome(int Finished, int Planned, string Report);

/// <summary>
/// The README's main command: PORT's core claims end to end on Fashion-MNIST, with generated proxies. A small real
/// training set; as proxies, as many images of each of: held-out real training images (the ideal proxy), samples of
/// the shipped DDPM and samples of the shipped GAN (the weaker generator); PGD adversarial training without and with
/// each proxy, clean / PGD-20 / AutoAttack evaluation on the same test points, Gaussian-noise training without and with
/// the DDPM samples certified by randomized smoothing, and a report with each gain and its uncertainty.
/// </summary>
public static class Demo
{
    public const string Kind = "port-demo";

    /// <summary>The shipped generators (models/README.md) and the shipped DDPM samples: 5,000 guided DPM-Solver++
    /// samples (10 steps, guidance 2, seed 0, chunks of 100) of models/fmnist-ddpm.json, gzip-compressed. Sampling them
    /// takes about 9 minutes on a 2-core Xeon and 30 on a 2-core AVX2 machine, more than the whole demo may take;
    /// `demo --sample-ddpm` remakes them, and a test checks that the shipped generator reproduces them.</summary>
    public const string GanModel = "fmnist-gan.json",
        DdpmModel = "fmnist-ddpm.json",
        DdpmSamples = "fmnist-ddpm-samples.npy.gz",
        DdpmSampleLabels = "fmnist-ddpm-samples.labels.npy.gz";

    public const int ShippedDdpmSampleCount = 5000;

    /// <summary>The request that made the shipped DDPM samples (and that remakes them, or more of them).</summary>
    public static GeneratorSampleRequest DdpmSampling(string models, string output, int count) =>
        new()
        {
            Checkpoint = Path.Combine(models, DdpmModel),
            Output = output,
            Count = count,
            ChunkSize = 100,
            Seed = 0,
        };

    /// <summary>Images per proxy: the same number for each, so that the proxies compare at equal counts.</summary>
    public static int ProxyImages(bool full) => full ? 20_000 : ShippedDdpmSampleCount;

    public static ExperimentSettings Settings(bool full) =>
        full
            ? new ExperimentSettings
            {
                Epochs = 100,
                AttackSteps = 10,
                EvalPoints = 2000,
                AutoAttackPoints = 1000,
                FinalAttack = AutoAttackVersion.Standard,
                CertifyPoints = 500,
                CertifySamples = 10_000,
            }
            // Sized for a 2-core AVX2 machine (issue 12; bench/RESULTS.md has the measurements behind it): 40 epochs
            // stay, because the gain comes from the baseline's robust overfitting late in training (30 epochs: PGD-20
            // gain +1.9 instead of +5.1); PGD-5 instead of PGD-10 in training and validation (step eps / 4, so the
            // five steps still reach the ball's surface), validation on 250 points, AutoAttack fast on 100 points
            // (standard took 47 s per model on the reference machine, fast matched it within 0.1 points on the demo's
            // models at 1,000 points in a seventh of the time; PGD-20 on 1,000 points carries the paired interval of
            // the robust gain), certificates with n = 1,000 (radii up to 0.61 can be certified, above the r = 0.5 the
            // report compares at).
            : new ExperimentSettings
            {
                Epochs = 40,
                AttackSteps = 5,
                ValSize = 250,
                EvalPoints = 1000,
                AutoAttackPoints = 100,
                FinalAttack = AutoAttackVersion.Fast,
                CertifyPoints = 200,
                CertifySamples = 1_000,
            };

    public static string StoresDir(string root) => Path.Combine(root, "stores");

    public static string DdpmStore(string root) => Path.Combine(StoresDir(root), "ddpm.npy");

    public static string GanStore(string root) => Path.Combine(StoresDir(root), "gan.npy");

    /// <param name="finalAttack">AutoAttack version of the final test (null: fast, or standard with --full)</param>
    /// <param name="valAttack">per-epoch validation attack: "pgd" or "fast"</param>
    public static ExperimentPlan Plan(
        bool full,
        string? output,
        string command,
        AutoAttackVersion? finalAttack = null,
        string valAttack = "pgd"
    )
    {
        var root = output ?? Path.Combine("runs", full ? "demo-full" : "demo");
        int[] seeds = full ? [0, 1] : [0];
        int n = ProxyImages(full);
        string ddpm = DdpmStore(root),
            gan = GanStore(root);
        var cells = seeds
            .SelectMany(s =>
                new[]
                {
                    new ExperimentCell($"baseline-s{s}", 500, 0, 0.5, 0.1, s),
                    new ExperimentCell($"real-s{s}", 500, n, 0.5, 0.1, s),
                    new ExperimentCell($"ddpm-s{s}", 500, n, 0.5, 0.1, s, ProxyName: "DDPM", ProxyStore: ddpm),
                    new ExperimentCell($"gan-s{s}", 500, n, 0.5, 0.1, s, ProxyName: "GAN", ProxyStore: gan),
                    // certified robustness: Gaussian-noise training (sigma 0.25) without and with the DDPM samples
                    new ExperimentCell($"noise-baseline-s{s}", 500, 0, 0.5, 0.1, s, Gaussian: true, Sigma: 0.25),
                    new ExperimentCell(
                        $"noise-ddpm-s{s}",
                        500,
                        n,
                        0.5,
                        0.1,
                        s,
                        Gaussian: true,
                        Sigma: 0.25,
                        ProxyName: "DDPM",
                        ProxyStore: ddpm
                    ),
                }
            )
            .ToList();
        var settings = Settings(full) with { ValAttack = valAttack };
        if (finalAttack is { } version)
            settings = settings with { FinalAttack = version };
        return new ExperimentPlan(root, Kind, command, settings, cells);
    }

    /// <summary>
    /// Makes the plan's generated proxy stores (once; each step resumes after a kill): the GAN's samples by sampling
    /// the shipped GAN (seconds), the DDPM's by unpacking the shipped samples, or by sampling the shipped DDPM when
    /// <paramref name="sampleDdpm"/> is set or the plan needs more of them than were shipped.
    /// </summary>
    public static void PrepareProxies(
        ExperimentPlan plan,
        string models,
        bool sampleDdpm,
        IExperimentObserver observer,
        CancellationToken cancel = default
    )
    {
        int n = plan.Cells.Max(c => c.SyntheticImages);
        Directory.CreateDirectory(StoresDir(plan.Root));
        void Log(string message)
        {
            Experiment.Log(plan.Root, message);
            observer.Log(message);
        }
        void Sample(string name, GeneratorSampleRequest request)
        {
            Log($"{name}: sampling {request.Count} images from {request.Checkpoint}");
            var outcome = observer.Cell(
                $"{name} samples",
                (_, phase) =>
                    GeneratorSampleRun.Execute(
                        request,
                        new Reporter<(long Done, long Total)>(p =>
                            phase?.Report(($"{name} sampling", (int)p.Done, (int)p.Total))
                        ),
                        cancel
                    )
            );
            Log($"{name}: {outcome.Count} samples in {outcome.Seconds:F0} s");
        }
        static bool Done(string store) => File.Exists(store) && File.Exists(StoreWriter.LabelsPath(store));

        var gan = GanStore(plan.Root);
        if (!Done(gan))
            Sample(
                "GAN",
                new GeneratorSampleRequest
                {
                    Checkpoint = Path.Combine(models, GanModel),
                    Output = gan,
                    Count = n,
                }
            );
        var ddpm = DdpmStore(plan.Root);
        if (Done(ddpm))
        {
            // a sampled store keeps its chunks beside it; an unpacked one has none
            if (sampleDdpm && !Directory.Exists(StoreWriter.PartsDir(ddpm)))
                throw new ArgumentException(
                    $"{plan.Root} already holds the shipped DDPM samples, and its models were trained on them: "
                        + "give --sample-ddpm another --out"
                );
            return;
        }
        var shipped = Path.Combine(models, DdpmSamples);
        if (!sampleDdpm && n == ShippedDdpmSampleCount && File.Exists(shipped))
        {
            Log($"DDPM: {n} samples unpacked from {shipped} (remake them with --sample-ddpm)");
            Gzip.Inflate(Path.Combine(models, DdpmSampleLabels), StoreWriter.LabelsPath(ddpm));
            Gzip.Inflate(shipped, ddpm);
        }
        else
            Sample("DDPM", DdpmSampling(models, ddpm, n));
    }

    /// <summary>The folder of the shipped generators: <paramref name="given"/>, else the nearest models/ folder holding
    /// them above the program (the repository's), else one below the current directory.</summary>
    public static string FindModels(string? given)
    {
        bool Holds(string dir) => File.Exists(Path.Combine(dir, GanModel)) && File.Exists(Path.Combine(dir, DdpmModel));
        if (given is not null)
            return Holds(given)
                ? given
                : throw new DataFormatException(given, $"holds no {GanModel} and {DdpmModel} (the shipped generators)");
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Holds(Path.Combine(dir.FullName, "models")))
                return Path.Combine(dir.FullName, "models");
        var here = Path.Combine(Directory.GetCurrentDirectory(), "models");
        return Holds(here)
            ? here
            : throw new DataFormatException(
                "models/",
                "the shipped generators (models/fmnist-gan.json, models/fmnist-ddpm.json) are not found: give --models"
            );
    }
}

/// <summary>The axes of a sample-complexity sweep: every combination is one cell.</summary>
public sealed record SweepGrid(
    IReadOnlyList<int> Real,
    IReadOnlyList<int> Synthetic,
    IReadOnlyList<double> Gamma,
    IReadOnlyList<double> Eps,
    IReadOnlyList<int> Seeds
);

/// <summary>
/// The paper's sample-complexity study: a grid of PORT runs over real images x proxy images x gamma x eps x seeds. Each
/// cell is a resumable run in ROOT/cells/NAME; finished cells are skipped, so a killed sweep continues where it
/// stopped.
/// Cells can be spread over processes or machines sharing the folder (worker i of n) or run one at a time (by name).
/// </summary>
public static class Sweep
{
    public const string Kind = "sweep";

    public static ExperimentPlan Plan(SweepGrid grid, ExperimentSettings settings, string root, string command)
    {
        static string N(double v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var cells = (
            from r in grid.Real
            from s in grid.Synthetic
            from g in grid.Gamma
            from e in grid.Eps
            from seed in grid.Seeds
            select new ExperimentCell($"r{r}-p{s}-g{N(g)}-e{N(e)}-s{seed}", r, s, g, e, seed)
        ).ToList();
        return new ExperimentPlan(root, Kind, command, settings, cells);
    }

    /// <summary>The cells worker <paramref name="index"/> of <paramref name="count"/> runs, optionally only the one
    /// named.</summary>
    public static IReadOnlyList<ExperimentCell> Share(ExperimentPlan plan, int index, int count, string? only = null)
    {
        if (count < 1 || index < 0 || index >= count)
            throw new ArgumentOutOfRangeException(nameof(index), $"worker {index}/{count}");
        if (only is not null && plan.Cells.All(c => c.Name != only))
            throw new ArgumentException($"no cell named '{only}' in this sweep");
        return plan.Cells.Where((c, i) => i % count == index && (only is null || c.Name == only)).ToList();
    }
}

/// <summary>Runs the cells of a plan that are this process's share, gathers every finished cell and rebuilds the
/// report.</summary>
public static class ExperimentRunner
{
    /// <summary>Under MPI (<paramref name="ranks"/> of more than one) the ranks split <paramref name="mine"/> (see
    /// <see cref="RunShares"/>); rank 0 then writes the report.</summary>
    public static ExperimentOutcome Run(
        ExperimentPlan plan,
        IReadOnlyList<ExperimentCell> mine,
        IExperimentObserver observer,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        Experiment.CheckSameSettings(plan.Root, plan.Settings);
        var finished = RunShares(plan, mine, observer, cancel, ranks);
        return finished is null
            ? new ExperimentOutcome(0, plan.Cells.Count, Path.Combine(plan.Root, ExperimentReport.FileName))
            : new ExperimentOutcome(finished.Count, plan.Cells.Count, ExperimentReport.Write(plan.Root));
    }

    /// <summary>Rank r runs every Size-th of <paramref name="mine"/> from the r-th on, each cell in one process as a
    /// single run would (so with the same result); only rank 0 writes experiment.json, after each of its cells and
    /// once every rank has finished. Returns the finished cells of the whole plan on rank 0, null on the
    /// others.</summary>
    public static List<CellRecord>? RunShares(
        ExperimentPlan plan,
        IReadOnlyList<ExperimentCell> mine,
        IExperimentObserver observer,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        void Log(string message)
        {
            Experiment.Log(plan.Root, message);
            observer.Log(message);
        }
        foreach (var cell in mine.Where((_, i) => i % job.Size == job.Rank))
        {
            cancel.ThrowIfCancellationRequested();
            observer.Cell(
                cell.Name,
                (training, evaluation) =>
                    Experiment.RunCell(plan.Root, plan.Settings, cell, Log, training, cancel, evaluation)
            );
            if (job.IsRoot)
                Experiment.SaveFinished(plan.Root, plan.Kind, plan.Command, plan.Settings, plan.Cells);
        }
        job.Barrier(); // every rank's cells are on disk before rank 0 gathers them (other workers' cells too)
        return job.IsRoot
            ? Experiment.SaveFinished(plan.Root, plan.Kind, plan.Command, plan.Settings, plan.Cells)
            : null;
    }
}

/// <summary>Runs cells and shows nothing: the ranks of an MPI job other than rank 0 (which reports for the
/// job).</summary>
public sealed class SilentObserver : IExperimentObserver
{
    public static readonly SilentObserver Instance = new();

    public void Log(string message) { }

    public T Cell<T>(
        string name,
        Func<IProgress<TrainProgress>, IProgress<(string Phase, int Done, int Total)>, T> work
    ) => work(new Ignored<TrainProgress>(), new Ignored<(string, int, int)>());

    private sealed class Ignored<T> : IProgress<T>
    {
        public void Report(T value) { }
    }
}
