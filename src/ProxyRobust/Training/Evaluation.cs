using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

public sealed record AccuracyResult(int Correct, int Total, int[] CorrectPerClass, int[] TotalPerClass)
{
    public double Accuracy => Total == 0 ? 0 : (double)Correct / Total;

    /// <summary>Wilson score interval at 95%: the honest error bar of an accuracy measured on Total points.</summary>
    public (double Low, double High) Wilson95 => Stats.Wilson95(Correct, Total);
}

public static class Stats
{
    /// <summary>The two-sided 95% normal quantile.</summary>
    public const double Z95 = 1.959963984540054;

    public static (double Low, double High) Wilson95(int successes, int n) => Wilson(successes, n, Z95);

    public static (double Low, double High) Wilson(int successes, int n, double z)
    {
        if (n == 0) return (0, 1);
        double p = (double)successes / n, z2 = z * z, denom = 1 + z2 / n;
        double centre = (p + z2 / (2 * n)) / denom;
        double half = z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / denom;
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }
}

public static class Evaluation
{
    /// <summary>Clean accuracy of <paramref name="model"/> on <paramref name="data"/> (eval mode, no gradients).</summary>
    public static AccuracyResult CleanAccuracy(Classifier model, ImageDataset data, int batchSize, Device device,
                                               IProgress<(int Done, int Total)>? progress = null) =>
        RobustEvaluation.Evaluate(model, data, attack: null, batchSize, device, progress: progress).Clean;
}
