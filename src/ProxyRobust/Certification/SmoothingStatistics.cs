using MathNet.Numerics.Distributions;

namespace ProxyRobust.Certification;

/// <summary>The exact statistics of randomized smoothing (Cohen, Rosenfeld &amp; Kolter 2019).</summary>
public static class SmoothingStatistics
{
    /// <summary>
    /// One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion from k successes in n trials:
    /// the alpha quantile of Beta(k, n - k + 1), and 0 when k = 0. (Cohen et al.'s <c>lower_confidence_bound</c>:
    /// <c>proportion_confint(k, n, alpha=2*alpha, method="beta")[0]</c>.)
    /// </summary>
    public static double ClopperPearsonLower(long k, long n, double alpha)
    {
        if (n <= 0 || k < 0 || k > n)
            throw new ArgumentOutOfRangeException(nameof(k), $"need 0 <= k <= n, n > 0 (k={k}, n={n})");
        if (alpha is <= 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(alpha));
        return k == 0 ? 0 : Beta.InvCDF(k, n - k + 1, alpha);
    }

    /// <summary>Standard normal quantile Phi^-1(p).</summary>
    public static double NormalQuantile(double p) => Normal.InvCDF(0, 1, p);

    /// <summary>
    /// Two-sided exact binomial test of "nA and nB are draws of a fair coin" (scipy's <c>binom_test(nA, nA +
    /// nB, 0.5)</c>): for p = 1/2 the distribution is symmetric, so the p-value is 2 P(X &gt;= max(nA, nB)), capped at
    /// 1.
    /// </summary>
    public static double BinomialTestHalf(long nA, long nB)
    {
        long n = nA + nB;
        if (n == 0)
            return 1;
        long k = Math.Max(nA, nB);
        if (2 * k == n)
            return 1;
        // P(X >= k) = 1 - P(X <= k - 1)
        double upper = 1 - Binomial.CDF(0.5, (int)n, k - 1);
        return Math.Min(1, 2 * upper);
    }

    /// <summary>Certified l-2 radius sigma * Phi^-1(pA lower bound) (Cohen et al., Theorem 1), or null when pA &lt;=
    /// 1/2 (abstain).</summary>
    public static double? Radius(double sigma, double pALower) =>
        pALower > 0.5 ? sigma * NormalQuantile(pALower) : null;
}
