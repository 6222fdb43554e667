using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxyRobust.Certification;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Bench;

/// <summary>
/// Certification throughput (issue 5): noise-sample forwards per second of CERTIFY's sampling loop, per
/// architecture and noise batch size, with the share of time spent drawing the Gaussian noise, and the utilisation of
/// the forward passes against the matmul peak measured in the same run.
/// </summary>
public static class CertifyBench
{
    public static JsonObject Run(double peakGflops)
    {
        var result = new JsonObject();
        foreach (
            var (arch, c, size, samples) in new[] { ("small-cnn", 1, 28, 20_000), ("preact-resnet18", 3, 32, 1_000) }
        )
        {
            torch.manual_seed(0);
            using var model = ArchSpec.For(arch, c, size, size, 10).Create();
            model.eval();
            long macs = FlopCounter.ForwardMacsPerImage(model);
            using var x = rand(c, size, size);
            var rows = new JsonArray();
            foreach (var batch in new[] { 32, 64, 100, 250, 1000 })
            {
                var smoothed = new SmoothedClassifier(model, 10, 0.25, batch);
                using (var g = new Generator(1))
                    smoothed.SampleCounts(x, batch, g); // warm-up
                var sw = Stopwatch.StartNew();
                using (var g = new Generator(2))
                    smoothed.SampleCounts(x, samples, g);
                double rate = samples / sw.Elapsed.TotalSeconds;
                // The noise alone: the same draws without the model.
                sw.Restart();
                using (var g = new Generator(3))
                using (var noGrad = no_grad())
                    for (int done = 0; done < samples; done += batch)
                    {
                        using var scope = NewDisposeScope();
                        (x.unsqueeze(0).expand(batch, -1, -1, -1) + randn([batch, c, size, size], generator: g) * 0.25)
                            .sum()
                            .item<float>();
                    }
                double noiseShare = sw.Elapsed.TotalSeconds / (samples / rate);
                double mfu = rate * macs * 2 / 1e9 / peakGflops;
                rows.Add(
                    new JsonObject
                    {
                        ["batch"] = batch,
                        ["forwardsPerSecond"] = rate,
                        ["noiseShare"] = noiseShare,
                        ["utilisation"] = mfu,
                    }
                );
                Console.WriteLine(
                    $"certify sampling {arch} noise batch {batch}: {rate:F0} noisy forwards/s, noise "
                        + $"{noiseShare:P0} of the time, MFU {mfu:P0}"
                );
            }
            result[arch] = rows;
        }
        return result;
    }
}
