using System.Diagnostics;
using ProxyRobust.Attacks;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Bench;

/// <summary>Times the pieces of an adversarial-training step (for profiling): forward, attack step, training
/// step.</summary>
public static class Probe
{
    /// <summary>Mean milliseconds of <paramref name="f"/> over <paramref name="reps"/> calls after one warm-up
    /// call.</summary>
    public static double Milliseconds(Action f, int reps)
    {
        for (int i = 0; i < 3; i++) // warm-up, as UNetBench and bench/pytorch_unet.py
            f();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < reps; i++)
            f();
        return sw.Elapsed.TotalMilliseconds / reps;
    }

    public static void Run(string arch, int batch, int c, int side, int reps)
    {
        torch.manual_seed(0);
        using var model = ArchSpec.For(arch, c, side, side, 10).Create();
        using var x = rand(batch, c, side, side);
        Console.WriteLine($"channels-last {model.ChannelsLast}");
        using var y = randint(0, 10, batch);
        double Time(Action f) => Milliseconds(f, reps);
        void Forward()
        {
            using var s = NewDisposeScope();
            using var g = no_grad();
            model.call(x);
        }
        model.eval();
        Console.WriteLine($"{arch} batch {batch}");
        Console.WriteLine($"  forward, eval, no grad: {Time(Forward):F1} ms");
        using (new AttackMode(model))
            Console.WriteLine(
                $"  forward, attack mode (frozen weights), no grad (a Square query): {Time(Forward):F1} ms"
            );
        using (new AttackMode(model))
            Console.WriteLine(
                $"  forward + input gradient (attack step): {Time(() =>
            {
                using var s = NewDisposeScope();
                var a = x.clone().requires_grad_(true);
                var l = nn.functional.cross_entropy(model.call(a), y, reduction: nn.Reduction.Sum);
                torch.autograd.grad([l], [a]);
            }):F1} ms"
            );
        Console.WriteLine(
            $"  forward + input gradient, weights still requiring grad: {Time(() =>
        {
            using var s = NewDisposeScope();
            var a = x.clone().requires_grad_(true);
            var l = nn.functional.cross_entropy(model.call(a), y, reduction: nn.Reduction.Sum);
            torch.autograd.grad([l], [a]);
        }):F1} ms"
        );
        model.train();
        Console.WriteLine(
            $"  forward + backward, train: {Time(() =>
        {
            using var s = NewDisposeScope();
            model.zero_grad();
            nn.functional.cross_entropy(model.call(x), y).backward();
        }):F1} ms"
        );
    }
}

/// <summary>Times the default diffusion UNet (for profiling): an evaluation without gradients and a training step
/// (loss, backward, Adam).</summary>
public static class UNetProbe
{
    /// <summary>One evaluation at batch 250 (unless <paramref name="evaluation"/> is false) and one training step at
    /// batch 128, each timed over <paramref name="reps"/> calls after 3 warm-up calls.</summary>
    public static void Run(int reps, bool evaluation = true, bool compareLayouts = false)
    {
        torch.manual_seed(0);
        using var ddpm = new Generative.Ddpm(UNetBench.Spec);
        using var adam = new Generative.Adam(ddpm.Net);
        double Time(Action f) => Probe.Milliseconds(f, reps);
        // With --layouts: the two activation layouts of the same network (UNet.ChannelsLast), alternated so that a
        // machine whose speed drifts affects both alike.
        void CompareLayouts(string what, Action f)
        {
            for (int round = 0; round < (compareLayouts ? 3 : 0); round++)
            {
                var times = new[] { false, true }
                    .Select(channelsLast =>
                    {
                        ddpm.Net.ChannelsLast = channelsLast;
                        return Time(f);
                    })
                    .ToArray();
                Console.WriteLine($"unet {what}, NCHW / channels-last: {times[0]:F1} / {times[1]:F1} ms");
            }
            ddpm.Net.ChannelsLast = true;
        }
        if (evaluation)
        {
            ddpm.Net.eval();
            using var xs = randn(250, 1, 28, 28);
            using var ys = randint(0, 10, 250);
            using var ts = full(250, 500, dtype: ScalarType.Int64);
            void Evaluate()
            {
                using var s = NewDisposeScope();
                using var g = no_grad();
                ddpm.Net.call(xs, ts, ys);
            }
            Console.WriteLine($"unet evaluation, batch 250: {Time(Evaluate):F1} ms");
            CompareLayouts("evaluation", Evaluate);
        }
        ddpm.Net.train();
        using var x = rand(128, 1, 28, 28);
        using var y = randint(0, 10, 128);
        void TrainingStep()
        {
            using var s = NewDisposeScope();
            var loss = ddpm.Loss(x, y);
            ddpm.Net.zero_grad();
            loss.backward();
            adam.Step(2e-4);
        }
        Console.WriteLine($"unet training step, batch 128: {Time(TrainingStep):F1} ms");
        CompareLayouts("training step", TrainingStep);
        // The step's dropout alone, forward and backward, on the largest of its activations: libtorch's (a serial
        // Bernoulli draw) against ours (Models/ParallelDropout.cs), alternated.
        using var h = rand(128, 32, 28, 28).requires_grad_(true);
        using var ours = new ParallelDropout(0.1);
        ours.train();
        double Dropout(Func<Tensor, Tensor> f) =>
            Time(() =>
            {
                using var s = NewDisposeScope();
                f(h).sum().backward();
            });
        for (int round = 0; round < 2; round++)
            Console.WriteLine(
                $"dropout 0.1 on 128x32x28x28, forward and backward: libtorch {Dropout(
                    x => nn.functional.dropout(x, 0.1, true)
                ):F1} ms, ours {Dropout(ours.call):F1} ms"
            );
    }
}
