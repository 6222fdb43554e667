namespace ProxyRobust.Core;

/// <summary>The statistics every report needs: Wilson intervals for accuracies, paired gains of two models on the same
/// points.</summary>
public static class Stats
{
    /// <summary>The two-sided 95% normal quantile.</summary>
    public const double Z95 = 1.959963984540054;

    public static (double Low, double High) Wilson95(int successes, int n) => Wilson(successes, n, Z95);

    public static (double Low, double High) Wilson(int successes, int n, double z)
    {
        if (n == 0)
            return (0, 1);
        double p = (double)successes / n,
            z2 = z * z,
            denom = 1 + z2 / n;
        double centre = (p + z2 / (2 * n)) / denom;
        double half = z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / denom;
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }

    /// <summary>
    /// Mean difference b - a of paired 0/1 outcomes (the same points under two models), with a normal-approximation 95%
    /// interval, in percentage points. NaN when the two do not pair up.
    /// </summary>
    public static (double Gain, double Low, double High) PairedGain(bool[] a, bool[] b)
    {
        if (a.Length != b.Length || a.Length == 0)
            return (double.NaN, double.NaN, double.NaN);
        var d = a.Zip(b, (x, y) => (y ? 1.0 : 0.0) - (x ? 1.0 : 0.0)).ToArray();
        double mean = d.Average();
        double sd = Math.Sqrt(d.Sum(v => (v - mean) * (v - mean)) / Math.Max(1, d.Length - 1));
        double half = Z95 * sd / Math.Sqrt(d.Length);
        return (100 * mean, 100 * (mean - half), 100 * (mean + half));
    }
}
