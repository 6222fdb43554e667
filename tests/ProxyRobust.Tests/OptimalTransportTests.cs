using ProxyRobust.Proxy;
using Xunit;

namespace ProxyRobust.Tests;

public sealed class OptimalTransportTests
{
    private static IEnumerable<int[]> Permutations(int[] items)
    {
        if (items.Length <= 1)
        {
            yield return items;
            yield break;
        }
        for (int i = 0; i < items.Length; i++)
        {
            var rest = items.Where((_, j) => j != i).ToArray();
            foreach (var p in Permutations(rest))
                yield return [items[i], .. p];
        }
    }

    [Fact]
    public void Assignment_cost_equals_the_minimum_over_all_permutations()
    {
        var rng = new Random(11);
        for (int trial = 0; trial < 40; trial++)
        {
            int n = 1 + trial % 7;
            var cost = new double[n, n];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                    cost[i, j] = trial % 3 == 0 ? rng.Next(0, 4) : rng.NextDouble() * 10 - 3; // ties and negatives too
            }
            double best = Permutations(Enumerable.Range(0, n).ToArray())
                .Min(p => Enumerable.Range(0, n).Sum(i => cost[i, p[i]]));
            var (assignment, total) = OptimalTransport.Assign(cost);
            Assert.Equal(best, total, 1e-9);
            Assert.Equal(Enumerable.Range(0, n), assignment.Order()); // a permutation
        }
    }

    [Fact]
    public void One_dimensional_distances_are_those_of_the_sorted_matching()
    {
        // on the line the monotone (sorted) coupling is optimal for every p >= 1
        var rng = new Random(2);
        int n = 200;
        var a = Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 3).ToArray();
        var b = Enumerable.Range(0, n).Select(_ => Math.Pow(rng.NextDouble(), 2) * 5 - 1).ToArray();
        var sa = a.Order().ToArray();
        var sb = b.Order().ToArray();
        double w1 = sa.Zip(sb, (x, y) => Math.Abs(x - y)).Average();
        double w2 = Math.Sqrt(sa.Zip(sb, (x, y) => (x - y) * (x - y)).Average());
        static double[,] Column(double[] v)
        {
            var m = new double[v.Length, 1];
            for (int i = 0; i < v.Length; i++)
                m[i, 0] = v[i];
            return m;
        }
        Assert.Equal(w1, OptimalTransport.Wasserstein(Column(a), Column(b), 1), 1e-9);
        Assert.Equal(w2, OptimalTransport.Wasserstein(Column(a), Column(b), 2), 1e-9);
    }

    [Fact]
    public void Samples_of_shifted_gaussians_are_at_the_closed_form_w2()
    {
        // W2(N(0, I), N(m, I)) = |m|; two independent samples of 500 points add a small positive bias
        var rng = new Random(5);
        double Gauss() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        int n = 500;
        var a = new double[n, 2];
        var b = new double[n, 2];
        for (int i = 0; i < n; i++)
        {
            a[i, 0] = Gauss();
            a[i, 1] = Gauss();
            b[i, 0] = 3 + Gauss();
            b[i, 1] = -1 + Gauss();
        }
        double w2 = OptimalTransport.Wasserstein(a, b, 2);
        Assert.InRange(w2, Math.Sqrt(10) - 0.05, Math.Sqrt(10) + 0.2);
    }

    [Fact]
    public void A_translated_proxy_is_at_the_translation_length_in_every_class()
    {
        // W_p(mu, mu + c) = |c| for p = 1 and 2, whatever mu: the translation is an optimal coupling
        var rng = new Random(8);
        var real = new List<double[,]>();
        var proxy = new List<double[,]>();
        double[] shifts = [0.5, 2.0, 0.0];
        for (int c = 0; c < 3; c++)
        {
            var r = new double[40, 3];
            var q = new double[40, 3];
            for (int i = 0; i < 40; i++)
            {
                for (int k = 0; k < 3; k++)
                {
                    r[i, k] = rng.NextDouble() * (c + 1);
                    q[i, k] = r[i, k] + (k == 0 ? shifts[c] : 0);
                }
            }
            real.Add(r);
            proxy.Add(q);
        }
        foreach (var p in new[] { 1.0, 2.0 })
        {
            var e = ConditionalWasserstein.Estimate(proxy, real, perClass: 40, repeats: 3, seed: 0, p);
            Assert.Equal(shifts, e.PerClass.Select(x => Math.Round(x, 9)));
            Assert.Equal(shifts.Average(), e.Mean, 1e-9);
            Assert.Equal(e.Mean, e.Low, 1e-9); // every repeat uses all points: no spread
        }
        // subsamples spread: the interval brackets the mean and widens
        var sub = ConditionalWasserstein.Estimate(proxy, real, perClass: 10, repeats: 30, seed: 1);
        Assert.True(sub.Low < sub.Mean && sub.Mean < sub.High, $"{sub}");
    }

    [Fact]
    public void Too_few_points_or_unequal_sides_are_refused()
    {
        Assert.Throws<ArgumentException>(() => OptimalTransport.Wasserstein(new double[3, 2], new double[4, 2]));
        Assert.Throws<ArgumentException>(() =>
            ConditionalWasserstein.Estimate([new double[5, 1]], [new double[20, 1]], 10, 1, 0)
        );
    }
}
