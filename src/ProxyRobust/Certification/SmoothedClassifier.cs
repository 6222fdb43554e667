using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Certification;

/// <summary>Outcome of CERTIFY for one input: the predicted class (-1: abstain) and its certified l-2 radius.</summary>
public sealed record Certificate(int Prediction, double Radius, long CountA, long Samples, double PALower)
{
    public bool Abstained => Prediction < 0;
}

/// <summary>
/// The smoothed classifier g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c) of a base classifier f, with Cohen et al.'s
/// Monte-Carlo PREDICT and CERTIFY (Algorithm "certify" and "predict" of the paper, as in locuslab/smoothing core.py).
/// Noise samples are drawn in batches of <see cref="BatchSize"/>; each input uses its own seeded generator.
/// </summary>
public sealed class SmoothedClassifier(Classifier model, int numClasses, double sigma, int batchSize = 100)
{
    public double Sigma => sigma;
    public int BatchSize => batchSize;

    /// <summary>CERTIFY: select the top class from n0 samples, estimate its probability from n fresh samples,
    /// lower-bound it at level alpha.</summary>
    public Certificate Certify(Tensor x, int n0, int n, double alpha, long seed)
    {
        using var generator = new Generator((ulong)Seeds.Derive(seed, 0xCE27), x.device);
        var selection = SampleCounts(x, n0, generator);
        int top = Array.IndexOf(selection, selection.Max());
        var estimation = SampleCounts(x, n, generator);
        long nA = estimation[top];
        double pA = SmoothingStatistics.ClopperPearsonLower(nA, n, alpha);
        var radius = SmoothingStatistics.Radius(sigma, pA);
        return radius is { } r ? new Certificate(top, r, nA, n, pA) : new Certificate(-1, 0, nA, n, pA);
    }

    /// <summary>PREDICT: the top class if a two-sided binomial test separates it from the runner-up at level alpha,
    /// else -1.</summary>
    public int Predict(Tensor x, int n, double alpha, long seed)
    {
        using var generator = new Generator((ulong)Seeds.Derive(seed, 0x9ED1), x.device);
        var counts = SampleCounts(x, n, generator);
        var order = Enumerable.Range(0, counts.Length).OrderByDescending(c => counts[c]).ToArray();
        long nA = counts[order[0]],
            nB = counts.Length > 1 ? counts[order[1]] : 0;
        return SmoothingStatistics.BinomialTestHalf(nA, nB) > alpha ? -1 : order[0];
    }

    /// <summary>How often the base classifier predicts each class on <paramref name="num"/> noisy copies of x (shape C
    /// x H x W).</summary>
    public long[] SampleCounts(Tensor x, int num, Generator generator)
    {
        var counts = new long[numClasses];
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            for (int remaining = num; remaining > 0; remaining -= batchSize)
            {
                using var scope = NewDisposeScope();
                int b = Math.Min(batchSize, remaining);
                var batch = x.unsqueeze(0).expand(b, -1, -1, -1);
                var noise = randn(batch.shape, dtype: x.dtype, device: x.device, generator: generator) * sigma;
                var predictions = model.call(batch + noise).argmax(1);
                var binCounts = predictions.bincount(null, numClasses).cpu().data<long>().ToArray();
                for (int c = 0; c < numClasses; c++)
                    counts[c] += binCounts[c];
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        return counts;
    }
}
