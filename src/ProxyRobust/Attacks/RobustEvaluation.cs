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
    /// threat model's ball and in [0,1]; a violation is a bug and throws.
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
        CancellationToken cancel = default
    )
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        bool wasTraining = model.training;
        model.eval();
        var sampler = new BatchSampler(data, batchSize, shuffle: false, AugmentOptions.None, seed: 0);
        var clean = new Counter(data.NumClasses);
        var robust = attack is null ? null : new Counter(data.NumClasses);
        float[]? adversarial =
            keepAdversarial && attack is not null ? new float[(long)data.Count * data.ImageBytes] : null;
        int done = 0,
            batchIndex = 0;
        try
        {
            foreach (var batch in sampler.Epoch(0))
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var (x, y) = batch.ToTensors(device);
                using (no_grad())
                    clean.Add(model.call(x).argmax(1).eq(y), batch.Labels, batch.Count);
                if (attack is not null)
                {
                    var adv = attack.WithSeed(Seeds.Derive(seed, batchIndex)).Perturb(model, x, y);
                    Checks.InsideThreatModel(attack.Threat, adv, x);
                    using (no_grad())
                        robust!.Add(model.call(adv).argmax(1).eq(y), batch.Labels, batch.Count);
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
        return new RobustResult(clean.Result(), robust?.Result(), attack?.Name, clock.Elapsed.TotalSeconds)
        {
            Adversarial = adversarial,
            CleanHits = clean.Hits.ToArray(),
            RobustHits = robust?.Hits.ToArray(),
        };
    }

    private sealed class Counter(int classes)
    {
        private readonly int[] _correctPer = new int[classes],
            _totalPer = new int[classes];
        public List<bool> Hits { get; } = [];

        public void Add(Tensor hits, long[] labels, int count)
        {
            var h = hits.cpu().data<bool>().ToArray();
            for (int i = 0; i < count; i++)
            {
                int l = (int)labels[i];
                _totalPer[l]++;
                if (h[i])
                    _correctPer[l]++;
                Hits.Add(h[i]);
            }
        }

        public AccuracyResult Result() => new(_correctPer.Sum(), Hits.Count, _correctPer, _totalPer);
    }
}
