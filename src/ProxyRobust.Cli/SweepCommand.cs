using System.CommandLine;
using System.Globalization;
using ProxyRobust.Attacks;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

/// <summary>The sample-complexity sweep (see <see cref="Sweep"/>): parse the grid, run this process's share,
/// report.</summary>
internal static class SweepCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var real = new Option<string>("--real")
        {
            Description = "real training images per cell (comma-separated)",
            DefaultValueFactory = _ => "250,500,1000",
        };
        var synthetic = new Option<string>("--synthetic")
        {
            Description = "proxy images per cell (0: real only; held-out real images serve as the proxy)",
            DefaultValueFactory = _ => "0,2000,20000",
        };
        var gamma = new Option<string>("--gamma")
        {
            Description = "weight of the proxy part of the loss",
            DefaultValueFactory = _ => "0.5",
        };
        var eps = new Option<string>("--eps")
        {
            Description = "l-inf budget for training and PGD-20 evaluation",
            DefaultValueFactory = _ => "0.1",
        };
        var seeds = new Option<string>("--seeds") { Description = "training seeds", DefaultValueFactory = _ => "0" };
        var epochs = new Option<int>("--epochs")
        {
            Description = "epochs over the real images",
            DefaultValueFactory = _ => 40,
        }.Positive();
        var evalSize = new Option<int>("--eval-size")
        {
            Description = "test points (the same for every cell)",
            DefaultValueFactory = _ => 1000,
        }.Positive();
        var valSize = new Option<int>("--val-size")
        {
            Description = "held-out validation images (robust accuracy each epoch)",
            DefaultValueFactory = _ => 500,
        }.Positive();
        var attackSteps = new Option<int>("--attack-steps")
        {
            Description = "PGD steps of training and of the per-epoch validation (step size eps / 4)",
            DefaultValueFactory = _ => 10,
        }.Positive();
        var aaPoints = new Option<int>("--autoattack-points")
        {
            Description = "also run AutoAttack (--final-attack) on this many of the test points",
            DefaultValueFactory = _ => 0,
        }.NonNegative();
        var finalAttack = Shared.FinalAttack();
        var valAttack = Shared.ValAttack();
        var output = new Option<string>("--out") { Description = "experiment folder", Required = true };
        var worker = new Option<string?>("--worker")
        {
            Description = "i/n: run only cells i, i+n, i+2n, ... (several processes or machines sharing --out)",
        };
        var cellName = new Option<string?>("--cell")
        {
            Description = "run only this cell (for a batch scheduler); --list shows the names",
        };
        var list = new Option<bool>("--list") { Description = "print the cells and whether they are done, then exit" };
        var threads = Shared.Threads();
        var cmd = new Command(
            "sweep",
            "Sample-complexity grid of PORT runs (real x proxy x gamma x eps x seed), resumable, with a table and "
                + "plots."
        )
        {
            real,
            synthetic,
            gamma,
            eps,
            seeds,
            epochs,
            evalSize,
            valSize,
            attackSteps,
            aaPoints,
            finalAttack,
            valAttack,
            output,
            worker,
            cellName,
            list,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var settings = new ExperimentSettings
                {
                    Epochs = p.GetValue(epochs),
                    EvalPoints = p.GetValue(evalSize),
                    ValSize = p.GetValue(valSize),
                    AttackSteps = p.GetValue(attackSteps),
                    AutoAttackPoints = p.GetValue(aaPoints),
                    FinalAttack = Enum.Parse<AutoAttackVersion>(p.GetValue(finalAttack)!, ignoreCase: true),
                    ValAttack = p.GetValue(valAttack)!,
                };
                var grid = new SweepGrid(
                    Ints(p.GetValue(real)!, "--real"),
                    Ints(p.GetValue(synthetic)!, "--synthetic", allowZero: true),
                    Doubles(p.GetValue(gamma)!, "--gamma", max: 1),
                    Doubles(p.GetValue(eps)!, "--eps"),
                    Ints(p.GetValue(seeds)!, "--seeds", allowZero: true)
                );
                var command = "proxyrobust " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1));
                var plan = Sweep.Plan(grid, settings, p.GetValue(output)!, command);
                if (p.GetValue(list))
                {
                    foreach (var c in plan.Cells)
                        Console.WriteLine($"{c.Name}\t{(Experiment.Record(plan.Root, c) is null ? "todo" : "done")}");
                    return ExitCodes.Ok;
                }
                var (index, count) = ParseWorker(p.GetValue(worker));
                if (p.GetValue(cellName) is { } name && plan.Cells.All(c => c.Name != name))
                    throw new UsageException($"--cell: no cell named '{name}' (see --list)");
                var mine = Sweep.Share(plan, index, count, p.GetValue(cellName));
                // under mpiexec the ranks split the cells (each cell runs in one rank), as --worker i/n does by hand
                using var ranks = Shared.StartRanks();
                if (ranks.Ranks.Size > 1 && count > 1)
                    throw new UsageException(
                        "--worker splits the cells by hand: give it or run under mpiexec, not both"
                    );
                Shared.StartTorch(p.GetValue(threads), ranks);
                if (!ranks.Ranks.IsRoot) // rank 0 reports for the job
                {
                    ExperimentRunner.Run(plan, mine, SilentObserver.Instance, cancel, ranks.Ranks);
                    return ExitCodes.Ok;
                }
                var outcome = ExperimentRunner.Run(plan, mine, new ProgressView.ExperimentView(), cancel, ranks.Ranks);
                Console.WriteLine($"{outcome.Finished} of {outcome.Planned} cells done; report: {outcome.Report}");
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    private static (int Index, int Count) ParseWorker(string? s)
    {
        if (s is null)
            return (0, 1);
        var parts = s.Split('/');
        if (
            parts.Length == 2
            && int.TryParse(parts[0], out int i)
            && int.TryParse(parts[1], out int n)
            && n > 0
            && i >= 0
            && i < n
        )
            return (i, n);
        throw new UsageException($"--worker must be i/n with 0 <= i < n, got '{s}'");
    }

    private static List<int> Ints(string s, string name, bool allowZero = false)
    {
        var values = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(v =>
                int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x)
                && (x > 0 || (allowZero && x == 0))
                    ? x
                    : throw new UsageException(
                        $"{name}: '{v}' is not a {(allowZero ? "non-negative" : "positive")} integer"
                    )
            )
            .Distinct()
            .ToList();
        return values.Count > 0 ? values : throw new UsageException($"{name} needs at least one value");
    }

    private static List<double> Doubles(string s, string name, double max = double.PositiveInfinity)
    {
        var values = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(v =>
                double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && x > 0 && x <= max
                    ? x
                    : throw new UsageException($"{name}: '{v}' is not a number in (0, {max}]")
            )
            .Distinct()
            .ToList();
        return values.Count > 0 ? values : throw new UsageException($"{name} needs at least one value");
    }
}
