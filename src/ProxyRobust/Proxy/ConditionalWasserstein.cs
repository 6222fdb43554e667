namespace ProxyRobust.Proxy;

/// <summary>An estimate of the class-conditional Wasserstein distance E_y[W_p(P_y, Q_y)] (classes weighted equally):
/// its mean over repeated subsamples, a 95% percentile interval over them, and each class's mean.</summary>
public sealed record WassersteinEstimate(
    double Mean,
    double Low,
    double High,
    double[] PerClass,
    int PerClassSamples,
    int Repeats,
    double P
);

/// <summary>
/// The class-conditional Wasserstein distance between a proxy and the real distribution, the quantity Sehwag et al.'s
/// transfer bound is stated in, estimated by exact optimal transport (<see cref="OptimalTransport"/>) between
/// equal-size per-class subsamples: each repeat draws m points of each class from both sides (without replacement),
/// solves each class exactly and averages over classes. The empirical distance is biased upwards at finite m (two
/// samples of one distribution are not at distance 0), so compare estimates at equal m, beside the real-vs-real value.
/// </summary>
public static class ConditionalWasserstein
{
    public static WassersteinEstimate Estimate(
        IReadOnlyList<double[,]> proxyByClass,
        IReadOnlyList<double[,]> realByClass,
        int perClass,
        int repeats,
        int seed,
        double p = 1
    )
    {
        int classes = proxyByClass.Count;
        if (realByClass.Count != classes || classes == 0)
            throw new ArgumentException($"{classes} proxy classes but {realByClass.Count} real ones");
        if (repeats < 1 || perClass < 1)
            throw new ArgumentException("repeats and samples per class must be positive");
        for (int c = 0; c < classes; c++)
        {
            int available = Math.Min(proxyByClass[c].GetLength(0), realByClass[c].GetLength(0));
            if (available < perClass)
                throw new ArgumentException(
                    $"class {c} has {available} points on its smaller side, fewer than the {perClass} asked for"
                );
        }
        var rng = new Random(seed);
        var estimates = new double[repeats];
        var perClassSum = new double[classes];
        for (int r = 0; r < repeats; r++)
        {
            double sum = 0;
            for (int c = 0; c < classes; c++)
            {
                var w = OptimalTransport.Wasserstein(
                    Draw(proxyByClass[c], perClass, rng),
                    Draw(realByClass[c], perClass, rng),
                    p
                );
                sum += w;
                perClassSum[c] += w;
            }
            estimates[r] = sum / classes;
        }
        Array.Sort(estimates);
        return new WassersteinEstimate(
            estimates.Average(),
            Quantile(estimates, 0.025),
            Quantile(estimates, 0.975),
            perClassSum.Select(s => s / repeats).ToArray(),
            perClass,
            repeats,
            p
        );
    }

    /// <summary>m rows drawn without replacement (all rows, in order, when m is the row count).</summary>
    private static double[,] Draw(double[,] rows, int m, Random rng)
    {
        int n = rows.GetLength(0),
            d = rows.GetLength(1);
        var order = Enumerable.Range(0, n).ToArray();
        if (m < n)
            rng.Shuffle(order);
        var sample = new double[m, d];
        for (int i = 0; i < m; i++)
        {
            for (int k = 0; k < d; k++)
                sample[i, k] = rows[order[i], k];
        }
        return sample;
    }

    /// <summary>Linear interpolation between order statistics of sorted values (type 7, as numpy's default).</summary>
    internal static double Quantile(double[] sorted, double q)
    {
        if (sorted.Length == 1)
            return sorted[0];
        double position = q * (sorted.Length - 1);
        int low = (int)Math.Floor(position);
        int high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + (position - low) * (sorted[high] - sorted[low]);
    }
}
