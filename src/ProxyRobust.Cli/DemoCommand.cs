using System.CommandLine;
using ProxyRobust.Experiments;
using ProxyRobust.Reporting;

namespace ProxyRobust.Cli;

/// <summary>
/// The README's main command: PORT's core claim end to end on Fashion-MNIST in minutes on 2 cores. A small real training
/// set, held-out real images as an (ideal) proxy, PGD adversarial training without and with the proxy images, clean /
/// PGD-20 / AutoAttack evaluation on the same test points, and a report with the gain and its uncertainty.
/// </summary>
internal static class DemoCommand
{
    public static ExperimentSettings Settings(bool full) => full
        ? new ExperimentSettings { Epochs = 100, EvalPoints = 2000, AutoAttackPoints = 1000, CertifyPoints = 500, CertifySamples = 10_000 }
        : new ExperimentSettings { Epochs = 40, EvalPoints = 1000, AutoAttackPoints = 200, CertifyPoints = 200, CertifySamples = 2_000 };

    public static Command Create()
    {
        var full = new Option<bool>("--full") { Description = "the scale of docs/PORT.md: 100 epochs, 2 seeds, 2,000 test points, AutoAttack on 1,000, certificates on 500 with n = 10,000 (hours on 2 cores)" };
        var output = new Option<string?>("--out") { Description = "output folder (default runs/demo, or runs/demo-full)" };
        var resume = new Option<bool>("--resume") { Description = "accepted for symmetry with train: the demo always continues where it stopped" };
        var threads = Shared.Threads();
        var cmd = new Command("demo", "The main job: adversarial and noise training on 500 Fashion-MNIST images with and without 20,000 proxy images, evaluated (PGD-20, AutoAttack, certificates) and reported.")
        {
            full, output, resume, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(p.GetValue(threads));
            bool isFull = p.GetValue(full);
            var root = p.GetValue(output) ?? Path.Combine("runs", isFull ? "demo-full" : "demo");
            var settings = Settings(isFull);
            Experiment.CheckSameSettings(root, settings);
            int[] seeds = isFull ? [0, 1] : [0];
            var cells = seeds.SelectMany(s => new[]
            {
                new ExperimentCell($"baseline-s{s}", 500, 0, 0.5, 0.1, s),
                new ExperimentCell($"port-s{s}", 500, 20000, 0.5, 0.1, s),
                // certified robustness: Gaussian-noise training (sigma 0.25) without and with the proxy images
                new ExperimentCell($"noise-baseline-s{s}", 500, 0, 0.5, 0.1, s, Gaussian: true, Sigma: 0.25),
                new ExperimentCell($"noise-port-s{s}", 500, 20000, 0.5, 0.1, s, Gaussian: true, Sigma: 0.25),
            }).ToList();
            var command = "proxyrobust demo" + (isFull ? " --full" : "") + (p.GetValue(output) is { } o ? $" --out {o}" : "");
            foreach (var cell in cells)
            {
                ProgressView.Train(cell.Name, progress => Experiment.RunCell(root, settings, cell, Experiment.Logger(root), progress));
                Experiment.SaveFinished(root, "port-demo", command, settings, cells);
            }
            var report = ExperimentReport.Write(root);
            Console.WriteLine();
            // The report without its title, command line and image links: the tables and the gains with their intervals.
            foreach (var line in File.ReadLines(report).Skip(4).Where(l => !l.StartsWith("![", StringComparison.Ordinal) && !l.StartsWith("Rebuild", StringComparison.Ordinal)))
                Console.WriteLine(line);
            Console.WriteLine($"report: {report} (plots beside it; rebuild with 'proxyrobust report {root}')");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
