using MathNet.Numerics.Distributions;
using ProxyRobust.Data;
using ProxyRobust.Proxy;
using Xunit;

namespace ProxyRobust.Tests;

public sealed class AdaptiveSamplingTests
{
    private static ImageDataset Store(int n) =>
        new(
            "mem",
            new ArrayImageStore(new byte[n * 4], 4),
            Enumerable.Range(0, n).Select(i => i % 2).ToArray(),
            2,
            2,
            1,
            ["0", "1"]
        );

    /// <summary>Counts of each store index over many batches of a stream drawing with these weights.</summary>
    private static long[] Counts(float[] weights, int batches, int seed)
    {
        var stream = new SyntheticStream(Store(weights.Length), 64, AugmentOptions.None, seed, weights);
        var counts = new long[weights.Length];
        for (long step = 0; step < batches; step++)
            foreach (var i in stream.Indices(step))
                counts[i]++;
        return counts;
    }

    /// <summary>Pearson's chi-square of the counts against the expected proportions, over the cells with positive
    /// expectation; asserts nothing fell in the others and that the statistic is below its 99.9% quantile.</summary>
    private static void AssertProportions(long[] counts, double[] expected)
    {
        long total = counts.Sum();
        double sum = expected.Sum();
        double chi2 = 0;
        int cells = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            if (expected[i] == 0)
            {
                Assert.Equal(0, counts[i]);
                continue;
            }
            double e = total * expected[i] / sum;
            Assert.True(e >= 5, $"expected count {e} too small for the test");
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
            cells++;
        }
        double critical = ChiSquared.InvCDF(cells - 1, 0.999);
        Assert.True(chi2 < critical, $"chi-square {chi2:F1} >= {critical:F1} on {cells - 1} degrees of freedom");
    }

    private static float[] Scores(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
    }

    [Fact]
    public void Top_fraction_draws_uniformly_from_the_best_scores_only()
    {
        var scores = Scores(50, 1);
        var weights = AdaptiveSampling.Weights(scores, SampleSelection.Parse("top:0.3"));
        var best = scores.Order().Skip(35).ToHashSet();
        var expected = scores.Select(s => best.Contains(s) ? 1.0 : 0.0).ToArray();
        Assert.Equal(15, expected.Count(e => e > 0));
        AssertProportions(Counts(weights, 1000, seed: 4), expected);
    }

    [Fact]
    public void Tempered_and_proportional_draws_follow_their_weights()
    {
        var scores = Scores(40, 2);
        var tempered = AdaptiveSampling.Weights(scores, SampleSelection.Parse("temperature:0.5"));
        AssertProportions(Counts(tempered, 1500, seed: 5), scores.Select(s => Math.Exp(s / 0.5)).ToArray());
        var proportional = AdaptiveSampling.Weights(scores, SampleSelection.Proportional);
        AssertProportions(Counts(proportional, 1500, seed: 6), scores.Select(s => (double)s).ToArray());
        // a low temperature concentrates on the best image, a high one approaches uniform
        var cold = AdaptiveSampling.Weights(scores, new SampleSelection(SelectionKind.Tempered, 0.01));
        Assert.Equal(Array.IndexOf(scores, scores.Max()), Array.IndexOf(cold, cold.Max()));
        Assert.True(cold.Max() / cold.Sum() > 0.5, $"{cold.Max() / cold.Sum()}");
        var hot = AdaptiveSampling.Weights(scores, new SampleSelection(SelectionKind.Tempered, 1000));
        Assert.True(hot.Min() / hot.Max() > 0.99);
    }

    [Fact]
    public void Random_fraction_keeps_that_many_images_a_different_set_per_seed_and_draws_them_uniformly()
    {
        var a = AdaptiveSampling.RandomFraction(50, 0.3, seed: 1);
        var b = AdaptiveSampling.RandomFraction(50, 0.3, seed: 2);
        Assert.Equal(15, a.Count(w => w > 0));
        Assert.Equal(15, b.Count(w => w > 0));
        Assert.NotEqual(a, b);
        Assert.Equal(a, AdaptiveSampling.RandomFraction(50, 0.3, seed: 1));
        AssertProportions(Counts(a, 1000, seed: 7), a.Select(w => (double)w).ToArray());
        Assert.Equal("random:0.3", SampleSelection.Parse("random:0.3").ToString());
    }

    [Theory]
    [InlineData("random:0")]
    [InlineData("top:0")]
    [InlineData("top:1.5")]
    [InlineData("temperature:-1")]
    [InlineData("softmax")]
    [InlineData("top")]
    public void Bad_selections_are_refused(string text) =>
        Assert.Throws<ArgumentException>(() => SampleSelection.Parse(text));
}
