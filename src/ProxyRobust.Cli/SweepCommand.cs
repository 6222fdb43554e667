using System.CommandLine;
using System.Globalization;
using ProxyRobust.Experiments;
using ProxyRobust.Reporting;

namespace ProxyRobust.Cli;

/// <summary>
/// The paper's sample-complexity study: a grid of PORT runs over real images x proxy images x gamma x eps x seeds. Each
/// cell is a resumable run in OUT/cells/NAME; finished cells are skipped, so a killed sweep continues where it stopped.
/// Cells can be spread over processes or machines sharing OUT (--worker i/n) or run one per invocation (--cell NAME).
/// </summary>
internal static class SweepCommand
{
    public static Command Create()
    {
        var real = new Option<string>("--real") { Description = "real training images per cell (comma-separated)", DefaultValueFactory = _ => "250,500,1000" };
        var synthetic = new Option<string>("--synthetic") { Description = "proxy images per cell (0: real only; held-out real images serve as the proxy)", DefaultValueFactory = _ => "0,2000,20000" };
        var gamma = new Option<string>("--gamma") { Description = "weight of the proxy part of the loss", DefaultValueFactory = _ => "0.5" };
        var eps = new Option<string>("--eps") { Description = "l-inf budget for training and PGD-20 evaluation", DefaultValueFactory = _ => "0.1" };
        var seeds = new Option<string>("--seeds") { Description = "training seeds", DefaultValueFactory = _ => "0" };
        var epochs = new Option<int>("--epochs") { Description = "epochs over the real images", DefaultValueFactory = _ => 40 };
        var evalSize = new Option<int>("--eval-size") { Description = "test points (the same for every cell)", DefaultValueFactory = _ => 1000 };
        var valSize = new Option<int>("--val-size") { Description = "held-out validation images (robust accuracy each epoch)", DefaultValueFactory = _ => 500 };
        var aaPoints = new Option<int>("--autoattack-points") { Description = "also run AutoAttack (standard) on this many of the test points", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "experiment folder", Required = true };
        var worker = new Option<string?>("--worker") { Description = "i/n: run only cells i, i+n, i+2n, ... (several processes or machines sharing --out)" };
        var cellName = new Option<string?>("--cell") { Description = "run only this cell (for a batch scheduler); --list shows the names" };
        var list = new Option<bool>("--list") { Description = "print the cells and whether they are done, then exit" };
        var threads = Shared.Threads();
        var cmd = new Command("sweep", "Sample-complexity grid of PORT runs (real x proxy x gamma x eps x seed), resumable, with a table and plots.")
        {
            real, synthetic, gamma, eps, seeds, epochs, evalSize, valSize, aaPoints, output, worker, cellName, list, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            var settings = new ExperimentSettings
            {
                Epochs = TrainCommand.Positive(p.GetValue(epochs), "--epochs"), EvalPoints = TrainCommand.Positive(p.GetValue(evalSize), "--eval-size"),
                ValSize = TrainCommand.Positive(p.GetValue(valSize), "--val-size"), AutoAttackPoints = Math.Max(0, p.GetValue(aaPoints)),
            };
            var cells = (from r in Ints(p.GetValue(real)!, "--real")
                         from s in Ints(p.GetValue(synthetic)!, "--synthetic", allowZero: true)
                         from g in Doubles(p.GetValue(gamma)!, "--gamma")
                         from e in Doubles(p.GetValue(eps)!, "--eps")
                         from seed in Ints(p.GetValue(seeds)!, "--seeds", allowZero: true)
                         select new ExperimentCell($"r{r}-p{s}-g{g.ToString(CultureInfo.InvariantCulture)}-e{e.ToString(CultureInfo.InvariantCulture)}-s{seed}",
                                                   r, s, g, e, seed)).ToList();
            var root = p.GetValue(output)!;
            if (p.GetValue(list))
            {
                foreach (var c in cells) Console.WriteLine($"{c.Name}\t{(Experiment.Record(root, c) is null ? "todo" : "done")}");
                return ExitCodes.Ok;
            }
            Experiment.CheckSameSettings(root, settings);
            var (index, count) = ParseWorker(p.GetValue(worker));
            var mine = cells.Where((c, i) => i % count == index && (p.GetValue(cellName) is not { } only || c.Name == only)).ToList();
            if (p.GetValue(cellName) is { } name && mine.Count == 0 && cells.All(c => c.Name != name))
                throw new UsageException($"--cell: no cell named '{name}' (see --list)");
            Shared.StartTorch(p.GetValue(threads));
            var command = "proxyrobust " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1));
            foreach (var cell in mine)
            {
                ProgressView.Train(cell.Name, progress => Experiment.RunCell(root, settings, cell, Experiment.Logger(root), progress));
                Experiment.SaveFinished(root, "sweep", command, settings, cells);
            }
            var finished = Experiment.SaveFinished(root, "sweep", command, settings, cells); // also other workers' cells
            var report = ExperimentReport.Write(root);
            Console.WriteLine($"{finished.Count} of {cells.Count} cells done; report: {report}");
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static (int Index, int Count) ParseWorker(string? s)
    {
        if (s is null) return (0, 1);
        var parts = s.Split('/');
        if (parts.Length == 2 && int.TryParse(parts[0], out int i) && int.TryParse(parts[1], out int n) && n > 0 && i >= 0 && i < n) return (i, n);
        throw new UsageException($"--worker must be i/n with 0 <= i < n, got '{s}'");
    }

    private static List<int> Ints(string s, string name, bool allowZero = false)
    {
        var values = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
            int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) && (x > 0 || (allowZero && x == 0))
                ? x : throw new UsageException($"{name}: '{v}' is not a {(allowZero ? "non-negative" : "positive")} integer")).Distinct().ToList();
        return values.Count > 0 ? values : throw new UsageException($"{name} needs at least one value");
    }

    private static List<double> Doubles(string s, string name)
    {
        var values = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
            double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && x > 0
                ? x : throw new UsageException($"{name}: '{v}' is not a positive number")).Distinct().ToList();
        return values.Count > 0 ? values : throw new UsageException($"{name} needs at least one value");
    }
}
