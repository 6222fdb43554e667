using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxyRobust.Attacks;
using ProxyRobust.Data;
using ProxyRobust.Experiments;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Bench;

/// <summary>
/// AutoAttack cost (issue 4). (1) Measured: AutoAttack standard on 1,000 Fashion-MNIST test points of a small CNN
/// PGD-trained here (2,000 images, 4 epochs), per component. (2) Worst case per 1,000 points that all stay robust, per
/// architecture: each component's per-point cost measured at a budget too small to break anything (so no point drops
/// out), on a short run, scaled linearly to AutoAttack's full iterations / targets / queries.
/// </summary>
public static class AutoAttackBench
{
    public static JsonObject Run(double peakGflops, int points)
    {
        var result = new JsonObject();
        using var fmnistTest = DatasetLoader.Load(DatasetLoader.FashionMnistName, Split.Test);
        var dir = Directory.CreateTempSubdirectory("proxyrobust-bench-aa-").FullName;
        try
        {
            TrainRun.Execute(
                new TrainRunConfig
                {
                    TrainSize = 2000,
                    EvalSize = 100,
                    Method = TrainMethod.Pgd,
                    Epsilon = 0.1,
                    OutputDir = dir,
                    Options = new TrainOptions
                    {
                        Epochs = 4,
                        BatchSize = 64,
                        LearningRate = 0.05,
                        Seed = 1,
                    },
                }
            );
            using var model = Checkpoint.LoadClassifier(Path.Combine(dir, "final.json"));
            using var subset = fmnistTest.Split(points, 7).Taken;
            var threat = new ThreatModel(Norm.Linf, 0.1);
            var pgd = RobustEvaluation.Evaluate(
                model,
                subset,
                new Pgd(threat, 20, Pgd.DefaultStepSize(0.1, 20)),
                250,
                CPU,
                seed: 0
            );
            var sw = Stopwatch.StartNew();
            var aa = new AutoAttack(threat, AutoAttackVersion.Standard, seed: 0).Run(model, subset, CPU);
            double seconds = sw.Elapsed.TotalSeconds;
            result["smallCnnMeasured"] = new JsonObject
            {
                ["points"] = points,
                ["clean"] = aa.CleanAccuracy,
                ["pgd20"] = pgd.Robust!.Accuracy,
                ["autoattack"] = aa.RobustAccuracy,
                ["seconds"] = seconds,
                ["secondsPer1000"] = seconds * 1000 / points,
                ["stages"] = new JsonArray(
                    aa.Stages.Select(s =>
                            (JsonNode)
                                new JsonObject
                                {
                                    ["attack"] = s.Attack,
                                    ["attacked"] = s.Attacked,
                                    ["robustAfter"] = s.RobustAfter,
                                    ["seconds"] = s.Seconds,
                                }
                        )
                        .ToArray()
                ),
            };
            Console.WriteLine(
                $"AutoAttack standard, small CNN (PGD-trained), {points} Fashion-MNIST points: clean "
                    + $"{aa.CleanAccuracy:P1}, "
                    + $"PGD-20 {pgd.Robust.Accuracy:P1}, AutoAttack {aa.RobustAccuracy:P1}; {seconds:F0} s = "
                    + $"{seconds * 1000 / points:F0} s per 1,000 points"
            );
            foreach (var s in aa.Stages)
                Console.WriteLine(
                    $"  {s.Attack}: {s.Attacked} attacked, {s.Seconds:F1} s, robust after {s.RobustAfter}"
                );
        }
        finally
        {
            try
            {
                Directory.Delete(dir, true);
            }
            catch (IOException) { }
        }

        foreach (var (arch, c, size) in new[] { ("small-cnn", 1, 28), ("preact-resnet18", 3, 32) })
            result[$"worstCase/{arch}"] = WorstCase(arch, c, size, peakGflops);
        return result;
    }

    private static JsonObject WorstCase(string arch, int c, int size, double peakGflops)
    {
        torch.manual_seed(0);
        using var model = ArchSpec.For(arch, c, size, size, 10).Create();
        model.eval();
        long macs = FlopCounter.ForwardMacsPerImage(model);
        int n = 32;
        using var x = rand(n, c, size, size);
        Tensor y;
        using (no_grad())
            y = model.call(x).argmax(1);
        // eps so small that no prediction changes: every point runs every iteration, query and target.
        var threat = new ThreatModel(Norm.Linf, 1e-7);
        var parts = new (string Name, IAttack Short, double Scale, double ForwardsPerPoint)[]
        {
            ("apgd-ce", new Apgd(threat, 10), 10, 100 * 2), // forward + input gradient per iteration
            ("apgd-t", new Apgd(threat, 10, Loss: ApgdLoss.TargetedDlr, TargetClasses: 1), 90, 900 * 2),
            ("fab-t", new Fab(threat, 10, TargetClasses: 1), 90, 900 * 3), // + a forward to test the new point
            ("square", new Square(threat, 100), 50, 5000),
        };
        var row = new JsonObject { ["forwardGflopPerImage"] = macs * 2 / 1e9 };
        double total = 0;
        foreach (var (name, attack, scale, forwards) in parts)
        {
            attack.Perturb(model, x.narrow(0, 0, 4), y.narrow(0, 0, 4)).Dispose(); // warm-up
            var sw = Stopwatch.StartNew();
            attack.Perturb(model, x, y).Dispose();
            double per1000 = sw.Elapsed.TotalSeconds * scale * 1000 / n;
            double mfu = forwards * macs * 2 * 1000 / per1000 / 1e9 / peakGflops;
            total += per1000;
            row[name] = new JsonObject { ["secondsPer1000"] = per1000, ["utilisation"] = mfu };
            Console.WriteLine($"  worst case {arch} {name}: {per1000:F0} s per 1,000 robust points (MFU {mfu:P0})");
        }
        row["totalSecondsPer1000"] = total;
        Console.WriteLine(
            $"AutoAttack standard worst case (every point robust), {arch}: {total:F0} s = {total / 3600:F2} h per "
                + $"1,000 points"
        );
        y.Dispose();
        return row;
    }
}
