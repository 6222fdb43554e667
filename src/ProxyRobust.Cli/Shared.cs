using System.CommandLine;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Native;
using Spectre.Console;
using TorchSharp;

namespace ProxyRobust.Cli;

/// <summary>Options that several verbs share, and the torch set-up they imply.</summary>
internal static class Shared
{
    public static Option<string> Data(
        string description =
            "training data: 'fashion-mnist' (Debian's package), an IDX/CIFAR/image folder, or an images .npy"
    ) => new("--data") { Description = description, DefaultValueFactory = _ => DatasetLoader.FashionMnistName };

    public static Option<string?> Labels() =>
        new("--labels") { Description = "labels .npy for an images .npy or .bin (default: NAME.labels.npy)" };

    public static Option<int?> Classes() =>
        new Option<int?>("--classes")
        {
            Description =
                "number of classes when the files do not name them (IDX, .npy); default: 0..the largest "
                + "label, each of which must occur",
        }.Positive();

    public static Option<string> Split(string dflt = "test") =>
        new Option<string>("--split")
        {
            Description = "train or test",
            DefaultValueFactory = _ => dflt,
        }.AcceptOnlyFromAmong("train", "test");

    public static Split SplitOf(string s) => s == "train" ? ProxyRobust.Data.Split.Train : ProxyRobust.Data.Split.Test;

    /// <summary>Experiments: the AutoAttack version of the final test.</summary>
    /// <param name="demo">the demo's option: no default value (the demo picks fast, or standard with --full)</param>
    public static Option<string> FinalAttack(bool demo = false)
    {
        var option = new Option<string>("--final-attack")
        {
            Description =
                "AutoAttack version of the final test: standard | strong (adds APGD-PM and APGD-MALT) | fast"
                + (demo ? " (default: fast, standard with --full)" : ""),
        };
        if (!demo)
            option.DefaultValueFactory = _ => "standard";
        return option.AcceptOnlyFromAmong("standard", "strong", "fast");
    }

    /// <summary>Adversarial training: the attack of the per-epoch validation.</summary>
    public static Option<string> ValAttack() =>
        new Option<string>("--val-attack")
        {
            Description =
                "per-epoch validation attack: pgd (PGD with the training's steps) | fast (APGD-CE, then "
                + "MALT-targeted APGD-T; slower, closer to AutoAttack)",
            DefaultValueFactory = _ => "pgd",
        }.AcceptOnlyFromAmong("pgd", "fast");

    public static Option<string> Device() =>
        new Option<string>("--device")
        {
            Description = "cpu or cuda (needs a CUDA TorchSharp package)",
            DefaultValueFactory = _ => "cpu",
        }.AcceptOnlyFromAmong("cpu", "cuda");

    public static Option<int> Threads() =>
        new Option<int>("--threads")
        {
            Description = "CPU threads for torch (0: all cores)",
            DefaultValueFactory = _ => 0,
        }.NonNegative();

    /// <summary>--synthetic S1 S2 ... and --names a b ...: the proxies of `arc` and `compare-proxies`.</summary>
    public static (Option<string[]> Stores, Option<string[]> Names) ProxyOptions(string storesDescription) =>
        (
            new Option<string[]>("--synthetic")
            {
                Description = storesDescription,
                Required = true,
                AllowMultipleArgumentsPerToken = true,
            },
            new Option<string[]>("--names")
            {
                Description = "a name per proxy (default: the file names)",
                AllowMultipleArgumentsPerToken = true,
            }
        );

    /// <summary>The proxies named by those options (a usage error when the counts differ).</summary>
    public static List<Experiments.ArcProxy> Proxies(string[] stores, string[]? names)
    {
        names ??= [];
        if (names.Length != 0 && names.Length != stores.Length)
            throw new UsageException($"{names.Length} names for {stores.Length} proxies");
        return stores
            .Select(
                (s, i) => new Experiments.ArcProxy(names.Length > 0 ? names[i] : Path.GetFileNameWithoutExtension(s), s)
            )
            .ToList();
    }

    public static Option<int> Seed() => new("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };

    public static Option<int> BatchSize(int dflt) =>
        new Option<int>("--batch-size")
        {
            Description = "images per batch",
            DefaultValueFactory = _ => dflt,
        }.Positive();

    public static Option<string?> SavePoints() =>
        new("--save-points")
        {
            Description =
                "write the points used (float32 N x H x W x C .npy in [0,1], labels beside in .labels.npy), to run "
                + "another implementation on exactly them",
        };

    public static void StartTorch(int threads, RanksScope? ranks = null)
    {
        if (TorchRuntime.OneDnn is { Enabled: false, Reason: var why } && ranks?.Ranks is not { Rank: > 0 })
            Console.WriteLine($"note: libtorch's oneDNN kernels are off ({why}); convolutions run slower");
        torch.set_num_threads(threads > 0 ? threads : DefaultThreads(ranks?.Ranks));
    }

    /// <summary>All cores, shared among the ranks of an MPI job on this machine (MPICH's launcher says how many
    /// there are), so that ranks do not oversubscribe the cores.</summary>
    private static int DefaultThreads(IRanks? ranks)
    {
        int local =
            ranks is { Size: > 1 }
            && int.TryParse(Environment.GetEnvironmentVariable("MPI_LOCALNRANKS"), out int n)
            && n > 0
                ? n
                : 1;
        return Math.Max(1, Environment.ProcessorCount / local);
    }

    /// <summary>This process's job: one process, or a rank of an MPI job when started by mpiexec.</summary>
    public static RanksScope StartRanks() => new(Distributed.Mpi.Start());

    /// <summary>The job's ranks for one verb. MPI itself ends with the process (Program.cs: Mpi.End), finalised
    /// when the verb succeeded and aborted for every rank when it failed.</summary>
    public sealed class RanksScope(IRanks ranks) : IDisposable
    {
        public IRanks Ranks => ranks;

        public void Dispose() { }
    }

    internal static string Percent(double value, double[]? ci) =>
        ci is [var low, var high] ? $"{value:P2}  (95% CI {low:P1}-{high:P1})" : $"{value:P2}";

    public static void Table(string title, IEnumerable<(string Key, string Value)> rows)
    {
        var table = new Table().Title(title).AddColumn("").AddColumn("");
        table.HideHeaders();
        foreach (var (k, v) in rows)
            table.AddRow(Markup.Escape(k), Markup.Escape(v));
        AnsiConsole.Write(table);
    }
}
