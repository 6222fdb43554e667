using System.Diagnostics;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Bench;

public sealed record StepResult(
    string Arch,
    int Batch,
    double ImagesPerSecond,
    double Gflops,
    double Utilisation,
    long ForwardMacsPerImage
);

public static class Measure
{
    /// <summary>Runs bench/pytorch_reference.py with Debian's python3-torch; null (and a note) when that is not
    /// installed.</summary>
    /// <param name="tuned">Also give PyTorch the two generic settings ProxyRobust applies to itself: channels-last
    /// ResNet (--channels-last) and glibc malloc keeping freed memory (the GLIBC_TUNABLES equivalent of
    /// NativeHeap).</param>
    public static System.Text.Json.Nodes.JsonNode? PyTorchReference(int threads, int steps, bool tuned = false) =>
        RunPython(
            "pytorch_reference.py",
            ["--threads", threads.ToString(), "--steps", steps.ToString(), .. tuned ? new[] { "--channels-last" } : []],
            tuned ? "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647" : null
        );

    /// <summary>Runs bench/SCRIPT with Debian's python3 (python3-torch) and parses the JSON object it prints last; null
    /// (and a line saying why) when Python or torch is missing or the script fails.</summary>
    public static System.Text.Json.Nodes.JsonNode? RunPython(string script, string[] args, string? glibcTunables = null)
    {
        var path = Path.Combine("bench", script);
        if (!File.Exists("/usr/bin/python3") || !File.Exists(path))
        {
            Console.WriteLine(
                "PyTorch reference skipped: needs /usr/bin/python3 with python3-torch (apt-get install python3-torch)"
            );
            return null;
        }
        var psi = new ProcessStartInfo("/usr/bin/python3", [path, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (glibcTunables is not null)
            psi.Environment["GLIBC_TUNABLES"] = glibcTunables;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEnd();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            Console.WriteLine($"PyTorch reference failed: {stderr.Split('\n').LastOrDefault(l => l.Length > 0)}");
            return null;
        }
        return System.Text.Json.Nodes.JsonNode.Parse(stdout.Trim().Split('\n')[^1]);
    }

    /// <summary>
    /// Median GFLOP/s of an fp32 matrix product [m x k] x [k x k] run by oneDNN: a 1x1 convolution over m =
    /// batch x 8 x 8 channels-last pixels is exactly that product. libtorch's own matmul goes to MKL, whose sgemm takes
    /// a slower path on AMD CPUs (about 45% of this on the reference machine), so the model-FLOP utilisation is
    /// measured against the best of both.
    /// </summary>
    public static double OneDnnGemmGflops(int m, int k, int reps = 10)
    {
        using var w = randn(k, k, 1, 1);
        using var nchw = randn(m / 64, k, 8, 8);
        using var x = Models.Classifier.ToChannelsLast(nchw);
        return 2.0 * m * k * k / MedianSeconds(() => nn.functional.conv2d(x, w).Dispose(), reps, warmup: 3) / 1e9;
    }

    /// <summary>Median GFLOP/s of an n x n fp32 matmul.</summary>
    public static double MatmulGflops(int n, int reps = 10)
    {
        using var a = randn(n, n);
        using var b = randn(n, n);
        return 2.0 * n * n * n / MedianSeconds(() => a.matmul(b).Dispose(), reps, warmup: 2) / 1e9;
    }

    /// <summary>Median wall time of <paramref name="reps"/> runs of <paramref name="op"/> after <paramref
    /// name="warmup"/> untimed ones.</summary>
    private static double MedianSeconds(Action op, int reps, int warmup)
    {
        for (int i = 0; i < warmup; i++)
            op();
        var times = new List<double>();
        for (int i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew();
            op();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        times.Sort();
        return times[reps / 2];
    }

    /// <summary>Images per second of full training steps (forward, backward, SGD update) with the given
    /// objective.</summary>
    public static StepResult TrainStep(
        ImageDataset data,
        string arch,
        int batch,
        ITrainingObjective objective,
        int steps,
        double peakGflops,
        double flopMultiplier = 3
    )
    {
        torch.manual_seed(0);
        var (mean, std) = DatasetStats.ChannelMeanStd(data, 5000);
        using var model = ArchSpec
            .For(arch, data.Channels, data.Height, data.Width, data.NumClasses, mean, std)
            .Create();
        long macs = FlopCounter.ForwardMacsPerImage(model);
        using var sgd = new Sgd(model, 0.9, 5e-4, false);
        var sampler = new BatchSampler(data, batch, shuffle: true, AugmentOptions.None, seed: 0);
        model.train();
        int warm = Math.Max(3, steps / 10),
            done = 0;
        long images = 0;
        var sw = new Stopwatch();
        foreach (var b in Enumerable.Range(0, 1000).SelectMany(e => sampler.Epoch(e)))
        {
            if (done == warm)
            {
                sw.Start();
                images = 0;
            }
            using (var scope = NewDisposeScope())
            {
                var (x, y) = b.ToTensors(CPU);
                var (loss, _) = objective.Loss(model, x, y, full(b.Count, 1.0 / b.Count));
                model.zero_grad();
                loss.backward();
                sgd.Step(0.01);
                loss.item<float>();
            }
            images += b.Count;
            if (++done == warm + steps)
                break;
        }
        double rate = images / sw.Elapsed.TotalSeconds;
        double gflops = rate * macs * 2 * flopMultiplier / 1e9;
        return new StepResult(arch, batch, rate, gflops, gflops / peakGflops, macs);
    }
}
