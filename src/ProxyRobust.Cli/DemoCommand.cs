using System.CommandLine;
using ProxyRobust.Attacks;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

/// <summary>The README's main command (see <see cref="Demo"/>): PORT's core claims end to end, with a report.</summary>
internal static class DemoCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var full = new Option<bool>("--full")
        {
            Description =
                "the scale of docs/PORT.md: 100 epochs, 2 seeds, 2,000 test points, AutoAttack on 1,000, "
                + "certificates on 500 with n = 10,000 (hours on 2 cores)",
        };
        var output = new Option<string?>("--out")
        {
            Description = "output folder (default runs/demo, or runs/demo-full)",
        };
        var resume = new Option<bool>("--resume")
        {
            Description = "accepted for symmetry with train: the demo always continues where it stopped",
        };
        var finalAttack = Shared.FinalAttack(demo: true);
        var models = new Option<string?>("--models")
        {
            Description = "folder of the shipped generators (default: the repository's models/)",
        };
        var sampleDdpm = new Option<bool>("--sample-ddpm")
        {
            Description =
                "sample the DDPM proxy from the shipped DDPM instead of unpacking the shipped samples (about 9 "
                + "minutes on a 2-core Xeon, 30 on a 2-core AVX2 machine)",
        };
        var valAttack = Shared.ValAttack();
        var threads = Shared.Threads();
        var cmd = new Command(
            "demo",
            "The main job: adversarial and noise training on 500 Fashion-MNIST images without and with 5,000 proxy "
                + "images (held-out real, DDPM samples, GAN samples), evaluated (PGD-20, AutoAttack, certificates) "
                + "and reported."
        )
        {
            full,
            output,
            resume,
            finalAttack,
            valAttack,
            models,
            sampleDdpm,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                bool isFull = p.GetValue(full);
                string? final = p.GetValue(finalAttack);
                string val = p.GetValue(valAttack)!;
                var command =
                    "proxyrobust demo"
                    + (isFull ? " --full" : "")
                    + (p.GetValue(output) is { } o ? $" --out {o}" : "")
                    + (final is not null ? $" --final-attack {final}" : "")
                    + (val != "pgd" ? $" --val-attack {val}" : "")
                    + (p.GetValue(sampleDdpm) ? " --sample-ddpm" : "");
                var plan = Demo.Plan(
                    isFull,
                    p.GetValue(output),
                    command,
                    final is null ? null : Enum.Parse<AutoAttackVersion>(final, ignoreCase: true),
                    val
                );
                var modelsDir = Demo.FindModels(p.GetValue(models));
                // under mpiexec the ranks split the cells (each cell runs in one rank); rank 0 prepares and reports
                using var ranks = Shared.StartRanks();
                Shared.StartTorch(p.GetValue(threads), ranks);
                Experiment.CheckSameSettings(plan.Root, plan.Settings);
                if (!ranks.Ranks.IsRoot)
                {
                    ranks.Ranks.Barrier(); // rank 0 has written the proxy stores
                    ExperimentRunner.Run(plan, plan.Cells, SilentObserver.Instance, cancel, ranks.Ranks);
                    return ExitCodes.Ok;
                }
                var view = new ProgressView.ExperimentView();
                Demo.PrepareProxies(plan, modelsDir, p.GetValue(sampleDdpm), view, cancel);
                ranks.Ranks.Barrier();
                var outcome = ExperimentRunner.Run(plan, plan.Cells, view, cancel, ranks.Ranks);
                Console.WriteLine();
                // The report's body: the tables and the gains with their intervals (not its title, command line or
                // image links).
                var body = File.ReadLines(outcome.Report)
                    .SkipWhile(l => !l.StartsWith("Setting:", StringComparison.Ordinal))
                    .Where(l =>
                        !l.StartsWith("![", StringComparison.Ordinal)
                        && !l.StartsWith("Rebuild", StringComparison.Ordinal)
                    );
                foreach (var line in body)
                    Console.WriteLine(line);
                Console.WriteLine(
                    $"report: {outcome.Report} (plots beside it; rebuild with 'proxyrobust report {plan.Root}')"
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
