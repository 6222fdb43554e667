using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// Projected gradient descent (Madry et al. 2018) for l-inf and l-2: optional random start, <c>Steps</c> ascent steps
/// of
/// <c>StepSize</c> on the chosen loss, projection onto the ball and the box after each, <c>Restarts</c> random
/// restarts.
/// <para>For evaluation (<c>KeepFirstSuccess</c>), an example keeps the first iterate that reaches the goal, in any
/// restart: with the same seed, more steps or more restarts can then only find more adversarial examples. For training
/// the last iterate is returned (the maximiser of the inner problem).</para>
/// </summary>
public sealed record Pgd(
    ThreatModel Threat,
    int Steps,
    double StepSize,
    int Restarts = 1,
    bool RandomStart = true,
    AttackLoss Loss = AttackLoss.CrossEntropy,
    bool KeepFirstSuccess = true,
    long Seed = 0
) : IAttack
{
    public string Name =>
        $"PGD-{Steps}{(Restarts > 1 ? $"x{Restarts}" : "")} ({Threat}, step {StepSize:G3}, {Loss}"
        + (Targeted ? $", targeted {Targets})" : ")");

    /// <summary>Targeted variant: towards a random other class per example, or towards the clean prediction's least
    /// likely class.</summary>
    public TargetChoice Targets { get; init; }

    private bool Targeted => Targets != TargetChoice.None;

    /// <summary>Step size 2.5 * eps / steps (Madry et al.), the usual default when none is given.</summary>
    public static double DefaultStepSize(double eps, int steps) => 2.5 * eps / Math.Max(1, steps);

    public IAttack WithSeed(long seed) => this with { Seed = seed };

    /// <summary>
    /// Attack at most this many examples at a time (0: the whole batch). In eval mode examples are independent, so
    /// chunking changes only cache behaviour: it exists because large batches run slower per image on CPU.
    /// </summary>
    public int Chunk { get; init; }

    public Tensor Perturb(Classifier model, Tensor images, Tensor labels)
    {
        using var mode = new AttackMode(model);
        using var generator = new Generator((ulong)Seeds.Derive(Seed, images.shape[0]), images.device);
        long n = images.shape[0];
        if (Chunk <= 0 || n <= Chunk)
            return PerturbChunk(model, images, labels, generator);
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>();
        for (long start = 0; start < n; start += Chunk)
        {
            long len = Math.Min(Chunk, n - start);
            parts.Add(PerturbChunk(model, images.narrow(0, start, len), labels.narrow(0, start, len), generator));
        }
        return cat(parts).MoveToOuterDisposeScope();
    }

    private Tensor PerturbChunk(Classifier model, Tensor images, Tensor trueLabels, Generator generator)
    {
        using var scope = NewDisposeScope();
        var x = images.detach();
        var labels = Targeted ? ChooseTargets(model, x, trueLabels, generator) : trueLabels;
        Tensor best = x.clone();
        Tensor found = zeros(x.shape[0], dtype: ScalarType.Bool, device: x.device);
        Tensor? lastIterate = null;

        for (int r = 0; r < Math.Max(1, Restarts); r++)
        {
            var adv = RandomStart ? Threat.RandomStart(x, generator) : x.clone();
            for (int t = 0; t <= Steps; t++)
            {
                using var stepScope = NewDisposeScope();
                var input = adv.detach().requires_grad_(true);
                var logits = model.call(input);
                if (KeepFirstSuccess)
                {
                    // Record iterates that reach the goal, for examples that had not before.
                    var newly = AttackLosses
                        .Succeeded(logits.detach(), labels, Targeted)
                        .logical_and(found.logical_not());
                    best.index_put_(input.detach().index(newly), newly);
                    found.logical_or_(newly);
                }
                if (t == Steps)
                    break;
                var loss = AttackLosses.PerExample(logits, labels, Loss, Targeted).sum();
                var grad = torch.autograd.grad([loss], [input])[0];
                var next = Threat.Project(Threat.Step(input.detach(), grad, StepSize), x).MoveToOuterDisposeScope();
                adv.Dispose(); // keep memory flat over many steps
                adv = next;
            }
            lastIterate?.Dispose();
            lastIterate = adv;
            if (KeepFirstSuccess && found.all().item<bool>())
                break;
        }
        var result = KeepFirstSuccess ? where(found.view(-1, 1, 1, 1), best, lastIterate!) : lastIterate!;
        return result.detach().MoveToOuterDisposeScope();
    }

    private Tensor ChooseTargets(Classifier model, Tensor x, Tensor labels, Generator generator)
    {
        using var noGrad = no_grad();
        var logits = model.call(x);
        long k = logits.shape[1];
        if (Targets == TargetChoice.LeastLikely)
            return logits.argmin(1);
        // uniform over the k-1 other classes
        var shift = randint(1, k, labels.shape, dtype: ScalarType.Int64, device: labels.device, generator: generator);
        return (labels + shift).remainder(k);
    }
}

public enum TargetChoice
{
    None,
    Random,
    LeastLikely,
}

/// <summary>
/// FGSM: one signed-gradient step of size eps (Goodfellow et al. 2015); with a random start and step 1.25 eps it is the
/// "fast" adversarial training attack of Wong et al. (2020).
/// </summary>
public sealed record Fgsm(ThreatModel Threat, bool RandomStart = false, double? StepSize = null, long Seed = 0)
    : IAttack
{
    public string Name => RandomStart ? $"FGSM-RS ({Threat})" : $"FGSM ({Threat})";

    public IAttack WithSeed(long seed) => this with { Seed = seed };

    public Tensor Perturb(Classifier model, Tensor images, Tensor labels) =>
        new Pgd(
            Threat,
            Steps: 1,
            StepSize ?? (RandomStart ? 1.25 * Threat.Epsilon : Threat.Epsilon),
            Restarts: 1,
            RandomStart: RandomStart,
            KeepFirstSuccess: false,
            Seed: Seed
        ).Perturb(model, images, labels);
}
