namespace ProxyRobust.Proxy;

/// <summary>Spearman's rank correlation with its exact permutation p-value: with a handful of proxies, no asymptotic
/// approximation holds, but all k! orderings can be enumerated (k &lt;= 9).</summary>
public static class RankCorrelation
{
    /// <summary>Ranks 1..n, ties given the average of the ranks they span.</summary>
    public static double[] Ranks(IReadOnlyList<double> values)
    {
        int n = values.Count;
        var order = Enumerable.Range(0, n).OrderBy(i => values[i]).ToArray();
        var ranks = new double[n];
        int start = 0;
        while (start < n)
        {
            int end = start;
            while (end + 1 < n && values[order[end + 1]] == values[order[start]])
                end++;
            double average = (start + end) / 2.0 + 1;
            for (int k = start; k <= end; k++)
                ranks[order[k]] = average;
            start = end + 1;
        }
        return ranks;
    }

    /// <summary>Pearson's correlation of the ranks (NaN when either side is constant).</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count || x.Count < 2)
            throw new ArgumentException("Spearman's correlation needs two equally long series of at least 2 values");
        return Pearson(Ranks(x), Ranks(y));
    }

    private static double Pearson(double[] a, double[] b)
    {
        double ma = a.Average(),
            mb = b.Average();
        double sab = 0,
            saa = 0,
            sbb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sab += (a[i] - ma) * (b[i] - mb);
            saa += (a[i] - ma) * (a[i] - ma);
            sbb += (b[i] - mb) * (b[i] - mb);
        }
        return saa == 0 || sbb == 0 ? double.NaN : sab / Math.Sqrt(saa * sbb);
    }

    /// <summary>
    /// The two-sided exact p-value of Spearman's rho under independence: the fraction of the n! orderings of y whose
    /// |rho| is at least the observed one (with 4 proxies the smallest possible p is 2/24 = 0.083: no ranking of 4 can
    /// be significant at 5%, which the report says).
    /// </summary>
    public static double ExactPValue(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        int n = x.Count;
        if (n > 9)
            throw new ArgumentException($"exact enumeration is for at most 9 values, got {n}");
        double observed = Math.Abs(Spearman(x, y));
        if (double.IsNaN(observed))
            return double.NaN;
        var rx = Ranks(x);
        var ry = Ranks(y);
        int atLeast = 0,
            total = 0;
        foreach (var permutation in Permutations(Enumerable.Range(0, n).ToArray(), 0))
        {
            var shuffled = permutation.Select(i => ry[i]).ToArray();
            if (Math.Abs(Pearson(rx, shuffled)) >= observed - 1e-12)
                atLeast++;
            total++;
        }
        return (double)atLeast / total;
    }

    private static IEnumerable<int[]> Permutations(int[] items, int from)
    {
        if (from == items.Length - 1)
        {
            yield return (int[])items.Clone();
            yield break;
        }
        for (int i = from; i < items.Length; i++)
        {
            (items[from], items[i]) = (items[i], items[from]);
            foreach (var p in Permutations(items, from + 1))
                yield return p;
            (items[from], items[i]) = (items[i], items[from]);
        }
    }
}
