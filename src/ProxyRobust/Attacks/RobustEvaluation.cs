using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

public sealed record AccuracyResult(int Correct, int Total, int[] CorrectPerClass, int[] TotalPerClass)
{
    public double Accuracy => Total == 0 ? 0 : (double)Correct / Total;

    /// <summary>Wilson score interval at 95%: the honest error bar of an accuracy measured on Total points.</summary>
    public (double Low, double High) Wilson95 => Stats.Wilson95(Correct, Total);
}

/// <summary>Clean and (optionally) robust accuracy on the same points, and the adversarial examples if asked
/// for.</summary>
public sealed record RobustResult(AccuracyResult Clean, AccuracyResult? Robust, string? AttackName, double Seconds)
{
    /// <summary>Adversarial images, float32 NHWC in [0,1], when requested.</summary>
    public float[]? Adversarial { get; init; }

    /// <summary>Per point, in data order: classified correctly when clean / under attack (for paired comparisons of two
    /// models).</summary>
    public bool[] CleanHits { get; init; } = [];
    public bool[]? RobustHits { get; init; }
}

public static class RobustEvaluation
{
    /// <summary>Clean accuracy of <paramref name="model"/> on <paramref name="data"/> (eval mode, no
    /// gradients).</summary>
    public static AccuracyResult CleanAccuracy(
        Classifier model,
        ImageDataset data,
        int batchSize,
        Device device,
        IProgress<(int Done, int Total)>? progress = null
    ) => Evaluate(model, data, attack: null, batchSize, device, progress: progress).Clean;

    /// <summary>
    /// Evaluates <paramref name="model"/> on <paramref name="data"/>: clean accuracy, and with an attack the robust
    /// accuracy
    /// (a point counts as robust when the model classifies its adversarial example correctly; attacks start from the
    /// clean point, so a misclassified clean point is never robust). Every adversarial example is checked to lie in the
    /// threat model's ball and in [0,1]; a violation is a bug and throws. In a job of several ranks each rank takes
    /// every Size-th batch (with the batch's own seed) and all ranks end with the whole result, equal to one
    /// process's.
    /// </summary>
    public static RobustResult Evaluate(
        Classifier model,
        ImageDataset data,
        IAttack? attack,
        int batchSize,
        Device device,
        long seed = 0,
        bool keepAdversarial = false,
        IProgress<(int Done, int Total)>? progress = null,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        bool wasTraining = model.training;
        model.eval();
        var sampler = new BatchSampler(data, batchSize, shuffle: false, AugmentOptions.None, seed: 0);
        // per point, in data order: 1 when classified correctly (clean / under attack), filled by the rank that
        // evaluated the point and summed over the ranks
        var cleanHits = new double[data.Count];
        var robustHits = attack is null ? null : new double[data.Count];
        float[]? adversarial =
            keepAdversarial && attack is not null ? new float[(long)data.Count * data.ImageBytes] : null;
        int done = 0,
            batchIndex = 0;
        try
        {
            foreach (var batch in sampler.Epoch(0))
            {
                cancel.ThrowIfCancellationRequested();
                if (batchIndex % job.Size != job.Rank)
                {
                    done += batch.Count;
                    batchIndex++;
                    continue; // another rank's batch
                }
                using var scope = NewDisposeScope();
                var (x, y) = batch.ToTensors(device);
                using (no_grad())
                    Fill(cleanHits, done, model.call(x).argmax(1).eq(y), batch.Count);
                if (attack is not null)
                {
                    var adv = attack.WithSeed(Seeds.Derive(seed, batchIndex)).Perturb(model, x, y);
                    Checks.InsideThreatModel(attack.Threat, adv, x);
                    using (no_grad())
                        Fill(robustHits!, done, model.call(adv).argmax(1).eq(y), batch.Count);
                    if (adversarial is not null)
                        adv.permute(0, 2, 3, 1)
                            .contiguous()
                            .cpu()
                            .data<float>()
                            .CopyTo(adversarial, checked(done * data.ImageBytes));
                }
                done += batch.Count;
                batchIndex++;
                progress?.Report((done, data.Count));
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        if (job.Size > 1)
        {
            job.SumInPlace(cleanHits);
            if (robustHits is not null)
                job.SumInPlace(robustHits);
            if (adversarial is not null)
                SumInPlace(job, adversarial); // each point's values come from one rank, zeros from the others
        }
        var cleanBits = cleanHits.Select(h => h > 0.5).ToArray();
        var robustBits = robustHits?.Select(h => h > 0.5).ToArray();
        return new RobustResult(
            Count(cleanBits, data),
            robustBits is null ? null : Count(robustBits, data),
            attack?.Name,
            clock.Elapsed.TotalSeconds
        )
        {
            Adversarial = adversarial,
            CleanHits = cleanBits,
            RobustHits = robustBits,
        };
    }

    private static void Fill(double[] hits, int offset, Tensor correct, int count)
    {
        var h = correct.cpu().data<bool>().ToArray();
        for (int i = 0; i < count; i++)
            hits[offset + i] = h[i] ? 1 : 0;
    }

    private static AccuracyResult Count(bool[] hits, ImageDataset data)
    {
        var correctPer = new int[data.NumClasses];
        var totalPer = new int[data.NumClasses];
        for (int i = 0; i < hits.Length; i++)
        {
            totalPer[data.Labels[i]]++;
            if (hits[i])
                correctPer[data.Labels[i]]++;
        }
        return new AccuracyResult(correctPer.Sum(), hits.Length, correctPer, totalPer);
    }

    private static unsafe void SumInPlace(IRanks job, float[] values)
    {
        // in chunks: an MPI count is an int
        const int chunk = 1 << 28;
        fixed (float* p = values)
            for (long start = 0; start < values.LongLength; start += chunk)
                job.SumInPlace((IntPtr)(p + start), (int)Math.Min(chunk, values.LongLength - start));
    }
}
