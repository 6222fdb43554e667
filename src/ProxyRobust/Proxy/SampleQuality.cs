using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Proxy;

/// <summary>What a classifier sees of a set of images: its penultimate features (float64, rows in dataset order), its
/// predictions and the true labels.</summary>
public sealed record FeatureSet(double[,] Features, int[] Predicted, int[] Labels)
{
    public int Count => Labels.Length;
    public int Dimension => Features.GetLength(1);

    /// <summary>The rows whose label is <paramref name="label"/>.</summary>
    public double[,] OfClass(int label)
    {
        var rows = Enumerable.Range(0, Count).Where(i => Labels[i] == label).ToArray();
        var subset = new double[rows.Length, Dimension];
        for (int r = 0; r < rows.Length; r++)
        {
            for (int j = 0; j < Dimension; j++)
                subset[r, j] = Features[rows[r], j];
        }
        return subset;
    }

    /// <summary>Penultimate features and predictions of every image, in batches, without gradients.</summary>
    public static FeatureSet Extract(
        Classifier model,
        ImageDataset images,
        int batchSize,
        Device device,
        IProgress<(int Done, int Total)>? progress = null
    )
    {
        model.Spec.CheckAccepts(images.Source, images.Channels, images.Height, images.Width, images.NumClasses);
        model.eval();
        using var noGrad = no_grad();
        double[,]? features = null;
        var predicted = new int[images.Count];
        BatchSampler.ForEachInOrder(
            images,
            batchSize,
            device,
            (x, _, at, count) =>
            {
                model.call(x).argmax(1).cpu().to(ScalarType.Int32).data<int>().CopyTo(predicted, at);
                var rows = model.Features(x).cpu().to(ScalarType.Float64).contiguous();
                int d = (int)rows.shape[1];
                features ??= new double[images.Count, d];
                var values = rows.data<double>();
                for (int i = 0; i < count; i++)
                {
                    for (int j = 0; j < d; j++)
                        features[at + i, j] = values[i * d + j];
                }
            },
            progress
        );
        return new FeatureSet(features ?? new double[0, 0], predicted, images.Labels.ToArray());
    }
}

/// <summary>
/// The Fréchet distance between Gaussians fitted to two sets of feature vectors (Heusel et al. 2017's FID, here in the
/// feature space of a classifier trained on the real data instead of Inception's, so values compare only within one
/// feature space and one sample size):
/// d^2 = |mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}).
/// The last trace equals Tr((S_a S_b)^{1/2}) without needing a non-symmetric square root: both matrices have the same
/// eigenvalues.
/// </summary>
public static class FrechetDistance
{
    public static double Between(double[,] a, double[,] b)
    {
        var (muA, covA) = Moments(a);
        var (muB, covB) = Moments(b);
        return FromMoments(muA, covA, muB, covB);
    }

    /// <summary>Mean and unbiased covariance of the rows.</summary>
    public static (double[] Mean, double[,] Covariance) Moments(double[,] rows)
    {
        int n = rows.GetLength(0),
            d = rows.GetLength(1);
        if (n < 2)
            throw new ArgumentException($"a covariance needs at least 2 feature vectors, got {n}");
        using var scope = NewDisposeScope();
        var x = ToTensor(rows);
        var mean = x.mean([0]);
        var centred = x - mean;
        var cov = centred.t().matmul(centred) / (n - 1);
        return (mean.data<double>().ToArray(), FromTensor(cov, d));
    }

    public static double FromMoments(double[] muA, double[,] covA, double[] muB, double[,] covB)
    {
        using var scope = NewDisposeScope();
        var meanTerm = 0.0;
        for (int i = 0; i < muA.Length; i++)
            meanTerm += (muA[i] - muB[i]) * (muA[i] - muB[i]);
        var sa = ToTensor(covA);
        var sb = ToTensor(covB);
        var rootA = SymmetricSqrt(sa);
        var m = rootA.matmul(sb).matmul(rootA);
        var cross = linalg.eigvalsh((m + m.t()) / 2).clamp_min(0).sqrt().sum().item<double>();
        var d2 = meanTerm + sa.trace().item<double>() + sb.trace().item<double>() - 2 * cross;
        return Math.Max(0, d2);
    }

    /// <summary>The PSD square root of a symmetric matrix through its eigendecomposition (negative round-off
    /// eigenvalues clamped to 0).</summary>
    private static Tensor SymmetricSqrt(Tensor s)
    {
        var (values, vectors) = linalg.eigh((s + s.t()) / 2);
        return vectors.matmul(diag(values.clamp_min(0).sqrt())).matmul(vectors.t());
    }

    internal static Tensor ToTensor(double[,] rows)
    {
        int n = rows.GetLength(0),
            d = rows.GetLength(1);
        var flat = new double[n * d];
        Buffer.BlockCopy(rows, 0, flat, 0, flat.Length * sizeof(double));
        return tensor(flat, [n, d], ScalarType.Float64);
    }

    private static double[,] FromTensor(Tensor t, int d)
    {
        var values = t.contiguous().data<double>().ToArray();
        var m = new double[values.Length / d, d];
        Buffer.BlockCopy(values, 0, m, 0, values.Length * sizeof(double));
        return m;
    }
}

/// <summary>
/// Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls around its
/// points with radius the distance to the point's k-th nearest neighbour in the same set. Precision is the fraction of
/// generated points inside the real manifold (are the samples realistic?), recall the fraction of real points inside
/// the generated manifold (is the real variety covered? A mode-collapsed generator has low recall). The paper uses
/// k = 3.
/// </summary>
public static class PrecisionRecall
{
    public static (double Precision, double Recall) Compute(double[,] real, double[,] generated, int k = 3)
    {
        using var scope = NewDisposeScope();
        var r = FrechetDistance.ToTensor(real).to(ScalarType.Float32);
        var g = FrechetDistance.ToTensor(generated).to(ScalarType.Float32);
        var radiusReal = KthNeighbourDistance(r, k);
        var radiusGenerated = KthNeighbourDistance(g, k);
        return (FractionInside(g, r, radiusReal), FractionInside(r, g, radiusGenerated));
    }

    private const int Block = 1024;

    /// <summary>For every row, the distance to its k-th nearest other row (the row itself, at distance 0, is not
    /// counted).</summary>
    internal static Tensor KthNeighbourDistance(Tensor points, int k)
    {
        long n = points.shape[0];
        if (n <= k)
            throw new ArgumentException($"k = {k} nearest neighbours need more than {k} points, got {n}");
        var radii = new float[n];
        for (long start = 0; start < n; start += Block)
        {
            using var scope = NewDisposeScope();
            var rows = points.narrow(0, start, Math.Min(Block, n - start));
            var d = cdist(rows, points);
            // k + 1 smallest: the first is the point itself
            var (values, _) = d.topk(k + 1, dim: 1, largest: false, sorted: true);
            values.select(1, k).contiguous().data<float>().CopyTo(radii, (int)start);
        }
        return tensor(radii);
    }

    /// <summary>The fraction of <paramref name="queries"/> within radius[i] of some point i of <paramref
    /// name="centres"/>.</summary>
    internal static double FractionInside(Tensor queries, Tensor centres, Tensor radius)
    {
        long n = queries.shape[0];
        long inside = 0;
        for (long start = 0; start < n; start += Block)
        {
            using var scope = NewDisposeScope();
            var rows = queries.narrow(0, start, Math.Min(Block, n - start));
            var d = cdist(rows, centres);
            inside += d.le(radius.unsqueeze(0)).any(1).sum().item<long>();
        }
        return (double)inside / n;
    }
}
