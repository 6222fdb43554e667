using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Native;
using ProxyRobust.Reporting;

namespace ProxyRobust.Tests;

public sealed class ExperimentTests
{
    public ExperimentTests() => TestSupport.InitTorch();

    [Fact]
    public void Paired_gain_matches_a_hand_computed_case()
    {
        // d = b - a = [0, -1, 1, 1]: mean 0.25, sample sd sqrt(2.75 / 3), half-width 1.96 sd / 2
        var (gain, lo, hi) = Stats.PairedGain([true, true, false, false], [true, false, true, true]);
        double half = 1.959963984540054 * Math.Sqrt(2.75 / 3) / 2;
        Assert.Equal(25, gain, 10);
        Assert.Equal(100 * (0.25 - half), lo, 10);
        Assert.Equal(100 * (0.25 + half), hi, 10);
    }

    private static string[] SweepArgs(string dir) =>
        [
            "sweep",
            "--real",
            "100,150,200",
            "--synthetic",
            "0,200,400",
            "--epochs",
            "1",
            "--eval-size",
            "50",
            "--val-size",
            "30",
            "--out",
            dir,
            "--threads",
            "1",
        ];

    [Fact]
    public void Sweep_of_3x3_cells_is_killed_and_resumed_without_redoing_finished_cells_and_its_report_can_be_rebuilt()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("sweep");
        // Start the sweep in a child process and kill it once the first cell has finished.
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ProxyRobust.Cli.dll"));
        foreach (var a in SweepArgs(dir))
            psi.ArgumentList.Add(a);
        var first = Path.Combine(dir, "cells", "r100-p0-g0.5-e0.1-s0", "evaluation.json");
        using (var child = Process.Start(psi)!)
        {
            child.OutputDataReceived += (_, _) => { };
            child.ErrorDataReceived += (_, _) => { };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            var clock = Stopwatch.StartNew();
            while (!File.Exists(first) && !child.HasExited && clock.Elapsed < TimeSpan.FromMinutes(4))
                Thread.Sleep(100);
            Assert.True(File.Exists(first), "the first cell did not finish");
            child.Kill(true);
            child.WaitForExit();
        }
        var firstResult = Path.Combine(Path.GetDirectoryName(first)!, "result.json");
        var stamp = (File.GetLastWriteTimeUtc(firstResult), File.GetLastWriteTimeUtc(first));
        var (code, stdout, err) = TestSupport.RunCli(SweepArgs(dir));
        Assert.True(code == 0, err);
        Assert.Contains("r100-p0-g0.5-e0.1-s0: trained (skipped)", stdout);
        Assert.Equal(stamp, (File.GetLastWriteTimeUtc(firstResult), File.GetLastWriteTimeUtc(first)));
        Assert.Contains("9 of 9 cells done", stdout);

        var exp = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "experiment.json")))!;
        var cells = exp["cells"]!.AsArray();
        Assert.Equal(9, cells.Count);
        foreach (var cell in cells)
        {
            var e = cell!["evaluation"]!;
            var clean = Bits.Parse((string?)e["cleanHits"]);
            var robust = Bits.Parse((string?)e["pgd20Hits"]);
            Assert.Equal(50, clean.Length);
            Assert.Equal(50, robust.Length);
            // A point that survives the attack is classified correctly when clean (the attack starts from it).
            Assert.All(
                Enumerable.Range(0, 50),
                i => Assert.True(!robust[i] || clean[i], $"point {i} robust but not clean")
            );
            Assert.Equal(clean.Count(c => c) / 50.0, e["clean"]!.GetValue<double>(), 10);
        }
        // The report and its plots can be rebuilt from experiment.json alone.
        foreach (var f in new[] { "report.md", "robust-vs-proxy.png", "clean-vs-proxy.png", "tradeoff.png" })
        {
            Assert.True(File.Exists(Path.Combine(dir, f)), f);
            File.Delete(Path.Combine(dir, f));
        }
        (code, _, err) = TestSupport.RunCli("report", dir);
        Assert.True(code == 0, err);
        var md = File.ReadAllText(Path.Combine(dir, "report.md"));
        Assert.Contains("| 200 | 400 |", md);
        // the paired gain of a proxy cell over its real-only cell, counted here from the stored per-point outcomes
        int RobustPoints(int real, int synthetic) =>
            Bits.Parse(
                    (string?)
                        cells.Single(c =>
                            (int)c!["parameters"]!["real"]! == real && (int)c!["parameters"]!["synthetic"]! == synthetic
                        )!["evaluation"]!["pgd20Hits"]
                )
                .Count(h => h);
        double gain = 100.0 * (RobustPoints(200, 400) - RobustPoints(200, 0)) / 50;
        Assert.Contains(
            $"- 200 real + 400 proxy, seed 0: PGD-20 "
                + $"**{(gain >= 0 ? "+" : "")}{gain.ToString("F1", CultureInfo.InvariantCulture)} (",
            md
        );
        Assert.True(new FileInfo(Path.Combine(dir, "robust-vs-proxy.png")).Length > 10_000);
        // A corrupt experiment.json: one error naming the file, exit 1, the previous report untouched.
        File.WriteAllText(Path.Combine(dir, "experiment.json"), "{\"kind\": \"sweep\", \"cells\": [");
        (code, _, err) = TestSupport.RunCli("report", dir);
        Assert.Equal(1, code);
        Assert.Contains("experiment.json", err);
        Assert.Equal(md, File.ReadAllText(Path.Combine(dir, "report.md")));
    }

    [Fact]
    public void Demo_experiment_reports_baseline_and_port_side_by_side_with_the_paired_gain()
    {
        // The demo's machinery at a tiny scale on real Fashion-MNIST: two cells, evaluation with AutoAttack, the
        // report.
        using var tmp = new TempDir();
        var root = tmp.File("demo");
        var settings = new ExperimentSettings
        {
            Epochs = 2,
            EvalPoints = 60,
            AutoAttackPoints = 20,
            ValSize = 40,
            CertifyPoints = 12,
            CertifySamples = 300,
        };
        ExperimentCell[] cells =
        [
            new("baseline-s0", 150, 0, 0.5, 0.1, 0),
            new("port-s0", 150, 600, 0.5, 0.1, 0),
            new("noise-baseline-s0", 150, 0, 0.5, 0.1, 0, Gaussian: true),
            new("noise-port-s0", 150, 600, 0.5, 0.1, 0, Gaussian: true),
        ];
        var records = cells.Select(c => Experiment.RunCell(root, settings, c)).ToList();
        Experiment.Save(root, "port-demo", "test", settings, cells, records);
        var md = File.ReadAllText(ExperimentReport.Write(root));
        Assert.Contains("| baseline | 0 | 150 | 0 |", md);
        Assert.Contains("| PORT (held-out real) | 0 | 150 | 600 |", md);
        // The stated PGD-20 gain equals the difference of the two models' accuracies on the same points.
        var evals = records.Take(2).Select(r => r.Evaluation).ToArray();
        double expected = 100 * (evals[1].Pgd20!.Value - evals[0].Pgd20!.Value);
        var line = md.Split('\n').Single(l => l.Contains("seed 0, PGD-20:"));
        Assert.Contains(
            $"{(expected >= 0 ? "+" : "")}{expected.ToString("F1", CultureInfo.InvariantCulture)}** points",
            line
        );
        Assert.Contains("seed 0, AutoAttack:", md);
        foreach (var e in evals)
        {
            // AutoAttack runs on the first 20 of the same points: it should not leave more robust points than PGD-20
            // there
            var pgd = Bits.Parse(e.Pgd20Hits);
            var aa = Bits.Parse(e.AutoAttack!.Hits);
            Assert.Equal(20, aa.Length);
            Assert.True(
                aa.Count(h => h) <= pgd.Take(20).Count(h => h) + 1,
                "AutoAttack much weaker than PGD-20 on the same points"
            );
        }
        // Certificates: one radius per certified point (-1 when wrong or abstained), none above the cap for n = 300,
        // and the
        // reported certified accuracy at 0.5 is the share of radii >= 0.5.
        double cap = 0.25 * Certification.SmoothingStatistics.NormalQuantile(Math.Pow(0.001, 1.0 / 300));
        foreach (var r in records.Skip(2))
        {
            var radii = r.Evaluation.Certify!.Radii;
            Assert.Equal(12, radii.Length);
            Assert.All(radii, x => Assert.True(x == -1 || (x >= 0 && x <= cap + 1e-4), $"radius {x}"));
        }
        Assert.Contains("## Certified robustness", md);
        Assert.Contains("seed 0, certified accuracy at r = 0.5:", md);
        Assert.True(new FileInfo(Path.Combine(root, "certified.png")).Length > 10_000);
        Assert.True(new FileInfo(Path.Combine(root, "accuracy.png")).Length > 10_000);
        Assert.True(new FileInfo(Path.Combine(root, "validation.png")).Length > 10_000);
    }

    [Fact]
    public void Cells_with_named_proxy_stores_each_get_their_paired_gain_over_the_baseline()
    {
        using var tmp = new TempDir();
        var root = tmp.File("proxies");
        // a "generated" proxy: 300 Fashion-MNIST test images with their labels, as a store file
        using (var test = TestSupport.FashionMnist(Split.Test))
        using (var part = test.Split(300, 2).Taken)
            NpyDataset.Write(part, tmp.File("store.npy"), tmp.File("store.labels.npy"));
        var settings = new ExperimentSettings
        {
            Epochs = 2,
            EvalPoints = 60,
            ValSize = 40,
        };
        ExperimentCell[] cells =
        [
            new("baseline-s0", 150, 0, 0.5, 0.1, 0),
            new("port-s0", 150, 600, 0.5, 0.1, 0),
            new("store-s0", 150, 300, 0.5, 0.1, 0, ProxyName: "test-images", ProxyStore: tmp.File("store.npy")),
        ];
        var records = cells.Select(c => Experiment.RunCell(root, settings, c)).ToList();
        Experiment.Save(root, "port-demo", "test", settings, cells, records);
        var md = File.ReadAllText(ExperimentReport.Write(root));
        Assert.Contains("| PORT (test-images) | 0 | 150 | 300 |", md);
        Assert.Contains("samples of the proxy store 'test-images'", md);
        var run = JsonFiles.Read<TrainRunRecord>(Path.Combine(root, "cells", "store-s0", TrainRunRecord.FileName));
        Assert.Equal(tmp.File("store.npy"), run.Config.Synthetic);
        Assert.Equal(300, run.SyntheticImages);
        // The result says which convolution kernels ran, as libtorch's own switch reports them.
        Assert.Equal(OneDnnGuard.IsEnabled(), run.OneDnn!.Enabled);
        foreach (
            var (model, record) in new[] { ("PORT (held-out real)", records[1]), ("PORT (test-images)", records[2]) }
        )
        {
            double expected = 100 * (record.Evaluation.Pgd20!.Value - records[0].Evaluation.Pgd20!.Value);
            var line = md.Split('\n').Single(l => l.Contains($"seed 0, {model}, PGD-20:"));
            Assert.Contains(
                $"{(expected >= 0 ? "+" : "")}{expected.ToString("F1", CultureInfo.InvariantCulture)}** points",
                line
            );
        }
    }

    [Fact]
    public void Sweep_rejects_bad_grids_and_workers()
    {
        using var tmp = new TempDir();
        Assert.Equal(2, TestSupport.RunCli("sweep", "--real", "100,-5", "--out", tmp.File("a")).Code);
        Assert.Equal(2, TestSupport.RunCli("sweep", "--real", "100", "--worker", "3/2", "--out", tmp.File("a")).Code);
        var (code, _, err) = TestSupport.RunCli("sweep", "--real", "100", "--cell", "nope", "--out", tmp.File("a"));
        Assert.Equal(2, code);
        Assert.Contains("no cell named 'nope'", err);
    }
}
