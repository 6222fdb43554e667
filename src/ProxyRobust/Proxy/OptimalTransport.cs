namespace ProxyRobust.Proxy;

/// <summary>
/// Exact optimal transport between two equal-size empirical distributions (uniform weights). With n points on each
/// side an optimal plan is a permutation (Birkhoff-von Neumann), so W_p^p = min over assignments of the mean cost
/// |x_i - y_sigma(i)|^p, found by the Hungarian method with potentials (Kuhn 1955, Munkres 1957; the O(n^3)
/// shortest-augmenting-path form of Jonker and Volgenant 1987).
/// </summary>
public static class OptimalTransport
{
    /// <summary>A minimum-cost perfect matching of the square cost matrix: assignment[i] is the column of row i; the
    /// total is the sum of the matched costs.</summary>
    public static (int[] Assignment, double Total) Assign(double[,] cost)
    {
        int n = cost.GetLength(0);
        if (cost.GetLength(1) != n)
            throw new ArgumentException($"the cost matrix must be square, got {n} x {cost.GetLength(1)}");
        // 1-based arrays as in the classic formulation: column 0 is a virtual start
        var u = new double[n + 1];
        var v = new double[n + 1];
        var rowOfColumn = new int[n + 1];
        var way = new int[n + 1];
        var minv = new double[n + 1];
        var used = new bool[n + 1];
        for (int row = 1; row <= n; row++)
        {
            rowOfColumn[0] = row;
            int column = 0;
            Array.Fill(minv, double.PositiveInfinity);
            Array.Clear(used);
            do
            {
                // grow the alternating tree by the column with the smallest reduced cost
                used[column] = true;
                int r = rowOfColumn[column],
                    next = 0;
                double delta = double.PositiveInfinity;
                for (int j = 1; j <= n; j++)
                {
                    if (used[j])
                        continue;
                    double reduced = cost[r - 1, j - 1] - u[r] - v[j];
                    if (reduced < minv[j])
                    {
                        minv[j] = reduced;
                        way[j] = column;
                    }
                    if (minv[j] < delta)
                    {
                        delta = minv[j];
                        next = j;
                    }
                }
                for (int j = 0; j <= n; j++)
                {
                    if (used[j])
                    {
                        u[rowOfColumn[j]] += delta;
                        v[j] -= delta;
                    }
                    else
                        minv[j] -= delta;
                }
                column = next;
            } while (rowOfColumn[column] != 0);
            // augment along the path back to the start
            do
            {
                int previous = way[column];
                rowOfColumn[column] = rowOfColumn[previous];
                column = previous;
            } while (column != 0);
        }
        var assignment = new int[n];
        for (int j = 1; j <= n; j++)
            assignment[rowOfColumn[j] - 1] = j - 1;
        double total = 0;
        for (int i = 0; i < n; i++)
            total += cost[i, assignment[i]];
        return (assignment, total);
    }

    /// <summary>W_p between the rows of <paramref name="a"/> and of <paramref name="b"/> (equal counts) under the
    /// Euclidean ground metric: (min over assignments of the mean |a_i - b_sigma(i)|^p)^(1/p).</summary>
    public static double Wasserstein(double[,] a, double[,] b, double p = 1)
    {
        int n = a.GetLength(0),
            d = a.GetLength(1);
        if (b.GetLength(0) != n || b.GetLength(1) != d)
            throw new ArgumentException(
                $"exact transport here needs equal-size samples of one dimension: {n}x{d} vs "
                    + $"{b.GetLength(0)}x{b.GetLength(1)}"
            );
        if (p < 1)
            throw new ArgumentException($"W_p needs p >= 1, got {p}");
        var cost = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < d; k++)
                {
                    double diff = a[i, k] - b[j, k];
                    s += diff * diff;
                }
                cost[i, j] = p == 2 ? s : Math.Pow(Math.Sqrt(s), p);
            }
        }
        var (_, total) = Assign(cost);
        return Math.Pow(total / n, 1 / p);
    }
}
