using ProxyRobust.Attacks;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Proxy;

/// <summary>
/// The measured side of the transfer bound: one model's average robustness (mean l-2 distance to its nearest
/// adversarial example, from FAB's minimum-norm perturbations) on real and on proxy images, and robust accuracy at a
/// budget read off the same distances (the fraction of points whose nearest adversarial example lies beyond it).
/// FAB finds an adversarial example, not the nearest one, so each distance is an upper bound; points where it finds
/// none within its iterations count at the largest distance found on either side (and are counted).
/// </summary>
public sealed record TransferGap(
    int Points,
    double MeanDistanceReal,
    double MeanDistanceProxy,
    double Gap,
    int NotFoundReal,
    int NotFoundProxy,
    double Epsilon,
    double RobustReal,
    double RobustProxy
);

public static class TransferGaps
{
    public static TransferGap Measure(
        Classifier model,
        ImageDataset real,
        ImageDataset proxy,
        double epsilon,
        int batchSize,
        Device device,
        int iterations = 100,
        IProgress<(int Done, int Total)>? progress = null
    )
    {
        if (real.Count != proxy.Count)
            throw new ArgumentException($"{real.Count} real points but {proxy.Count} proxy points");
        var fab = new Fab(new ThreatModel(Norm.L2, epsilon), iterations, Targeted: false);
        // progress over both sides: the proxy's points come after the real ones
        double[] Distances(ImageDataset ds, int offset)
        {
            var norms = new double[ds.Count];
            BatchSampler.ForEachInOrder(
                ds,
                batchSize,
                device,
                (x, y, at, _) =>
                    fab.MinimumNorm(model, x, y).Norms.cpu().to(ScalarType.Float64).data<double>().CopyTo(norms, at),
                progress is null
                    ? null
                    : new Core.Reporter<(int Done, int Total)>(p => progress.Report((offset + p.Done, 2 * ds.Count)))
            );
            return norms;
        }
        var r = Distances(real, 0);
        var p = Distances(proxy, real.Count);
        double cap = r.Concat(p).Where(double.IsFinite).DefaultIfEmpty(0).Max();
        double Mean(double[] d) => d.Select(v => double.IsFinite(v) ? v : cap).Average();
        double Robust(double[] d) => d.Count(v => v > epsilon) / (double)d.Length;
        double meanReal = Mean(r),
            meanProxy = Mean(p);
        return new TransferGap(
            real.Count,
            meanReal,
            meanProxy,
            Math.Abs(meanReal - meanProxy),
            r.Count(v => !double.IsFinite(v)),
            p.Count(v => !double.IsFinite(v)),
            epsilon,
            Robust(r),
            Robust(p)
        );
    }
}
