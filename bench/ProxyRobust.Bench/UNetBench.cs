using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxyRobust.Generative;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Bench;

/// <summary>
/// The diffusion UNet (issue 13): training steps (loss, backward, Adam) and sampling (network evaluations without
/// gradients; DDIM and DPM-Solver++(2M) at 10, 25 and 100 evaluations), ours and the same network in Debian's PyTorch
/// 1.13 (bench/pytorch_unet.py) in the same run, with model-FLOP utilisation against the run's peak.
/// </summary>
public static class UNetBench
{
    /// <summary>The network of `generator train`'s defaults for Fashion-MNIST, as bench/pytorch_unet.py builds
    /// it.</summary>
    public static DdpmSpec Spec => new(new UNetSpec(1, 28, 28, 10, 32, [1, 2, 2], 2, [], 0.1));

    public static JsonObject Run(double peakGflops, int threads, int reps)
    {
        var spec = Spec;
        torch.manual_seed(0);
        using var ddpm = new Ddpm(spec);
        long macs = FlopCounter.ForwardMacsPerImage(ddpm.Net);
        long parameters = ddpm.Net.ParameterCount();
        Console.WriteLine(
            $"UNet {spec.Net}: {parameters:N0} parameters, {macs * 2 / 1e9:F3} GFLOP per image and evaluation"
        );
        const int trainBatch = 128,
            sampleBatch = 250;
        using var x = rand(trainBatch, 1, 28, 28);
        using var y = randint(0, 10, trainBatch);
        using var adam = new Adam(ddpm.Net);
        // Three warm-up calls (the first allocations' page faults, oneDNN's primitive cache, the JIT's tiers), as
        // bench/pytorch_unet.py makes; the samplers, minutes long, get one.
        double Rate(Action f, int n, int warmup = 3)
        {
            for (int i = 0; i < warmup; i++)
                f();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
                f();
            return n / sw.Elapsed.TotalSeconds;
        }
        ddpm.Net.train();
        double trainImages =
            trainBatch
            * Rate(
                () =>
                {
                    using var scope = NewDisposeScope();
                    var loss = ddpm.Loss(x, y);
                    ddpm.Net.zero_grad();
                    loss.backward();
                    adam.Step(2e-4);
                },
                reps
            );
        ddpm.Net.eval();
        using var xs = randn(sampleBatch, 1, 28, 28);
        using var ys = randint(0, 10, sampleBatch);
        using var ts = full(sampleBatch, 500, dtype: ScalarType.Int64);
        double evaluations =
            sampleBatch
            * Rate(
                () =>
                {
                    using var scope = NewDisposeScope();
                    using var noGrad = no_grad();
                    ddpm.Net.call(xs, ts, ys);
                },
                reps
            );
        var sampling = new JsonObject();
        foreach (var kind in new[] { SamplerKind.Ddim, SamplerKind.DpmSolver2M })
        {
            foreach (int steps in new[] { 10, 25, 100 })
            {
                var o = new SamplerOptions(kind, steps);
                double perSecond =
                    sampleBatch
                    * Rate(
                        () => ddpm.Sample(ys, o, generator: new Generator(1)).Dispose(),
                        steps >= 100 ? 1 : 2,
                        warmup: 1
                    );
                sampling[$"{kind}/{steps}"] = perSecond;
                Console.WriteLine($"  sampling {kind} {steps} evaluations: {perSecond:F1} img/s");
            }
        }
        var torchRef = Measure.RunPython(
            "pytorch_unet.py",
            ["--threads", threads.ToString(), "--reps", reps.ToString()]
        );
        double? torchTrain = torchRef?["trainImagesPerSecond"]?.GetValue<double>(),
            torchEvals = torchRef?["evaluationsPerSecond"]?.GetValue<double>(),
            torchDdim10 = torchRef?["ddim10ImagesPerSecond"]?.GetValue<double>();
        double Mfu(double? imagesPerSecond, double forwards) =>
            (imagesPerSecond ?? double.NaN) * macs * 2 * forwards / 1e9 / peakGflops;
        Console.WriteLine(
            $"UNet training step batch {trainBatch}: ours {trainImages:F1} img/s (MFU {Mfu(trainImages, 3):P0}), "
                + "PyTorch "
                + $"{torchTrain:F1} img/s (MFU {Mfu(torchTrain, 3):P0}), ratio {trainImages / torchTrain:F2}x"
        );
        Console.WriteLine(
            $"UNet evaluation batch {sampleBatch} (no gradients): ours {evaluations:F1}/s "
                + $"(MFU {Mfu(evaluations, 1):P0}), "
                + $"PyTorch {torchEvals:F1}/s (MFU {Mfu(torchEvals, 1):P0}), ratio {evaluations / torchEvals:F2}x"
        );
        double ours10 = sampling["Ddim/10"]!.GetValue<double>();
        Console.WriteLine(
            $"DDIM 10 steps: ours {ours10:F1} img/s, PyTorch {torchDdim10:F1} img/s, ratio {ours10 / torchDdim10:F2}x"
        );
        return new JsonObject
        {
            ["spec"] = spec.Net.ToString(),
            ["parameters"] = parameters,
            ["forwardGflopPerImage"] = macs * 2 / 1e9,
            ["trainBatch"] = trainBatch,
            ["sampleBatch"] = sampleBatch,
            ["oursTrainImagesPerSecond"] = trainImages,
            ["oursTrainUtilisation"] = Mfu(trainImages, 3),
            ["oursEvaluationsPerSecond"] = evaluations,
            ["oursEvaluationUtilisation"] = Mfu(evaluations, 1),
            ["oursSamplingImagesPerSecond"] = sampling,
            ["pytorch"] = torchRef?.DeepClone(),
            ["pytorchTrainUtilisation"] = torchTrain is null ? null : Mfu(torchTrain, 3),
            ["pytorchEvaluationUtilisation"] = torchEvals is null ? null : Mfu(torchEvals, 1),
            ["trainRatio"] = torchTrain is null ? null : trainImages / torchTrain,
            ["evaluationRatio"] = torchEvals is null ? null : evaluations / torchEvals,
            ["ddim10Ratio"] = torchDdim10 is null ? null : ours10 / torchDdim10,
        };
    }
}
