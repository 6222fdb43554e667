using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

public sealed record AccuracyResult(int Correct, int Total, int[] CorrectPerClass, int[] TotalPerClass)
{
    public double Accuracy => Total == 0 ? 0 : (double)Correct / Total;

    /// <summary>Wilson score interval at 95%: the honest error bar of an accuracy measured on Total points.</summary>
    public (double Low, double High) Wilson95 => Stats.Wilson(Correct, Total, 1.959963984540054);
}

public static class Stats
{
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
                                               IProgress<(int Done, int Total)>? progress = null)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var sampler = new BatchSampler(data, batchSize, shuffle: false, AugmentOptions.None, seed: 0);
            int correct = 0, total = 0;
            var perClass = new int[data.NumClasses];
            var totalPerClass = new int[data.NumClasses];
            using var noGrad = no_grad();
            foreach (var batch in sampler.Epoch(0))
            {
                using var scope = NewDisposeScope();
                var (x, y) = batch.ToTensors(device);
                var hit = model.forward(x).argmax(1).eq(y).cpu();
                var hits = hit.data<bool>().ToArray();
                for (int i = 0; i < batch.Count; i++)
                {
                    int label = (int)batch.Labels[i];
                    totalPerClass[label]++;
                    if (hits[i]) { correct++; perClass[label]++; }
                }
                total += batch.Count;
                progress?.Report((total, data.Count));
            }
            return new AccuracyResult(correct, total, perClass, totalPerClass);
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}
