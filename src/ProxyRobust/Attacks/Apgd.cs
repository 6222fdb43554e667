using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

public enum ApgdLoss
{
    CrossEntropy,
    Dlr,
    TargetedDlr,

    /// <summary>The probability margin (<see cref="AttackLosses.ProbabilityMargin"/>), ascended in its
    /// negation.</summary>
    ProbabilityMargin,
}

/// <summary>How APGD-T chooses its target classes.</summary>
public enum TargetOrder
{
    /// <summary>AutoAttack's: the 2nd, 3rd, ... most likely classes of the clean input.</summary>
    Logits,

    /// <summary>MALT (<see cref="MaltTargeting"/>): the classes whose boundary is nearest by a linear
    /// estimate.</summary>
    Malt,
}

/// <summary>
/// Auto-PGD (Croce &amp; Hein, ICML 2020, Algorithm 1) for l-inf and l-2: PGD with momentum 0.75 and a step
/// size that starts at 2 eps and halves at checkpoints w_j where progress stalled (condition 1: the loss rose in at
/// most rho = 75% of the steps since the last checkpoint; condition 2: the step was not reduced last time and the best
/// loss did not improve), restarting from the best point. Checkpoint spacing starts at 22% of the iterations and
/// shrinks by 3% down to 6%, as in the authors' code.
/// <para>Losses: cross-entropy (APGD-CE), the DLR loss (APGD-DLR), and the targeted DLR loss towards the 2nd..(k+1)-th
/// most likely classes of the clean input, one run per target (APGD-T), or towards MALT's targets (<see
/// cref="TargetOrder.Malt"/>); and the probability margin (APGD-PM). An example keeps the first iterate that is
/// misclassified; examples never fooled are returned unchanged (clean).</para>
/// </summary>
public sealed record Apgd(
    ThreatModel Threat,
    int Iterations = 100,
    int Restarts = 1,
    ApgdLoss Loss = ApgdLoss.CrossEntropy,
    int TargetClasses = 9,
    int EotIterations = 1,
    double Rho = 0.75,
    long Seed = 0,
    TargetOrder Targeting = TargetOrder.Logits
) : IAttack
{
    public string Name =>
        Loss switch
        {
            ApgdLoss.CrossEntropy => "APGD-CE",
            ApgdLoss.Dlr => "APGD-DLR",
            ApgdLoss.ProbabilityMargin => "APGD-PM",
            _ when Targeting == TargetOrder.Malt => $"APGD-T with MALT targets ({TargetClasses} targets)",
            _ => $"APGD-T ({TargetClasses} targets)",
        }
        + $" ({Threat}, {Iterations} "
        + $"it{(Restarts > 1 ? $", {Restarts} restarts" : "")}{(EotIterations > 1 ? $", EOT {EotIterations}" : "")})";

    public IAttack WithSeed(long seed) => this with { Seed = seed };

    /// <summary>Reports the fraction of the batch's work done (every 10 iterations).</summary>
    public IProgress<double>? Progress { get; init; }

    public IAttack WithProgress(IProgress<double>? progress) => this with { Progress = progress };

    public Tensor Perturb(Classifier model, Tensor images, Tensor labels)
    {
        using var mode = new AttackMode(model);
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)Seeds.Derive(Seed, images.shape[0]), images.device);
        var x = images.detach();
        var adv = x.clone();
        var (robust, order) = RobustPoints.Clean(model, x, labels);
        long classes = order.shape[1];
        // Column `pass` of `targets` is the pass's target class: AutoAttack's skips the most likely class (column 0).
        var targets =
            Loss != ApgdLoss.TargetedDlr ? null
            : Targeting == TargetOrder.Malt ? MaltTargeting.Order(model, x, labels, Threat.Norm)
            : order.narrow(1, 1, classes - 1);
        // APGD-T: one pass per target class (2nd most likely, 3rd, ...), each with its restarts; others: one pass.
        int passes = Loss == ApgdLoss.TargetedDlr ? Math.Min(TargetClasses, (int)classes - 1) : 1;
        if (Loss == ApgdLoss.TargetedDlr && classes < 4)
            throw new ArgumentException("the targeted DLR loss needs at least 4 classes");
        for (int pass = 0; pass < passes; pass++)
        {
            for (int r = 0; r < Math.Max(1, Restarts); r++)
            {
                using var passScope = NewDisposeScope();
                var todo = robust.nonzero().view(-1);
                if (todo.shape[0] == 0)
                    return adv.MoveToOuterDisposeScope();
                var target = targets?.index_select(0, todo)[.., pass];
                int units = passes * Math.Max(1, Restarts),
                    unit = pass * Math.Max(1, Restarts) + r;
                var (fooled, advCurr) = SingleRun(
                    model,
                    x.index_select(0, todo),
                    labels.index_select(0, todo),
                    target,
                    generator,
                    iteration => Progress?.Report((unit + (double)iteration / Iterations) / units)
                );
                RobustPoints.MarkBroken(robust, adv, todo, fooled, advCurr);
            }
        }
        return adv.MoveToOuterDisposeScope();
    }

    private (Tensor Logits, Tensor Loss, Tensor Grad) LossAndGrad(
        Classifier model,
        Tensor xAdv,
        Tensor y,
        Tensor? target
    )
    {
        using var scope = NewDisposeScope();
        Tensor? grad = null,
            logits = null,
            loss = null;
        for (int e = 0; e < Math.Max(1, EotIterations); e++)
        {
            var input = xAdv.detach().requires_grad_(true);
            logits = model.call(input);
            loss = Loss switch
            {
                ApgdLoss.CrossEntropy => nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.None),
                ApgdLoss.Dlr => AttackLosses.Dlr(logits, y),
                ApgdLoss.ProbabilityMargin => -AttackLosses.ProbabilityMargin(logits, y),
                _ => AttackLosses.TargetedDlr(logits, y, target!),
            };
            var g = torch.autograd.grad([loss.sum()], [input])[0];
            grad = grad is null ? g : grad + g;
        }
        if (EotIterations > 1)
            grad = grad! / EotIterations;
        return (
            logits!.detach().MoveToOuterDisposeScope(),
            loss!.detach().MoveToOuterDisposeScope(),
            grad!.MoveToOuterDisposeScope()
        );
    }

    /// <summary>One run of Algorithm 1 on a batch; returns which examples were misclassified at some iterate, and that
    /// iterate.</summary>
    private (Tensor Fooled, Tensor Adversarial) SingleRun(
        Classifier model,
        Tensor x,
        Tensor y,
        Tensor? target,
        Generator generator,
        Action<int> reportIteration
    )
    {
        using var scope = NewDisposeScope();
        int n = Iterations;
        int checkpointSpacing = Math.Max((int)(0.22 * n), 1),
            minSpacing = Math.Max((int)(0.06 * n), 1),
            spacingDecrease = Math.Max((int)(0.03 * n), 1);
        long batch = x.shape[0];
        double eps = Threat.Epsilon;

        // Random start on the sphere of the ball (l-inf: a uniform draw rescaled to max-norm eps).
        var t =
            Threat.Norm == Norm.Linf
                ? rand(x.shape, dtype: x.dtype, device: x.device, generator: generator) * 2 - 1
                : randn(x.shape, dtype: x.dtype, device: x.device, generator: generator);
        var xAdv = (x + eps * UnitNormalize(t)).clamp(0, 1);
        var xBest = xAdv.clone();
        var xBestAdv = xAdv.clone();
        var (logits, loss, grad) = LossAndGrad(model, xAdv, y, target);
        var gradBest = grad.clone();
        var correct = logits.argmax(1).eq(y);
        var lossBest = loss.clone();
        var lossSteps = zeros([n, batch], dtype: loss.dtype, device: x.device);
        var stepSize = full([batch, 1, 1, 1], 2.0 * eps, dtype: x.dtype, device: x.device);
        var xAdvOld = xAdv.clone();
        int k = checkpointSpacing,
            sinceCheckpoint = 0;
        var lossBestLastCheck = lossBest.clone();
        var reducedLastCheck = ones(batch, dtype: ScalarType.Bool, device: x.device);

        for (int i = 0; i < n; i++)
        {
            if (i % 10 == 0)
                reportIteration(i);
            var momentumTerm = xAdv - xAdvOld;
            xAdvOld = xAdv;
            double a = i > 0 ? 0.75 : 1.0;
            var z =
                Threat.Norm == Norm.Linf
                    ? Threat.Project(xAdv + stepSize * grad.sign(), x)
                    : Threat.Project(xAdv + stepSize * UnitNormalize(grad), x);
            // x^(k+1) = P(x^k + a (z^(k+1) - x^k) + (1 - a)(x^k - x^(k-1)))   (Algorithm 1, line 8)
            xAdv = Threat.Project(xAdv + (z - xAdv) * a + momentumTerm * (1 - a), x);
            (logits, loss, grad) = LossAndGrad(model, xAdv, y, target);

            var predCorrect = logits.argmax(1).eq(y);
            correct.logical_and_(predCorrect);
            xBestAdv = where(predCorrect.logical_not().view(-1, 1, 1, 1), xAdv, xBestAdv);

            lossSteps[i] = loss;
            var improved = loss.gt(lossBest);
            var improved4 = improved.view(-1, 1, 1, 1);
            xBest = where(improved4, xAdv, xBest);
            gradBest = where(improved4, grad, gradBest);
            lossBest = where(improved, loss, lossBest);

            if (++sinceCheckpoint == k)
            {
                // Condition 1: fraction of the last k steps with an increase of the loss. The authors' code compares
                // the first of them with row i-k, which wraps to the (still zero) last row at the first checkpoint;
                // kept.
                var increases = zeros(batch, dtype: ScalarType.Float32, device: x.device);
                for (int c = 0; c < k; c++)
                {
                    int prev = ((i - c - 1) % n + n) % n;
                    increases += lossSteps[i - c].gt(lossSteps[prev]).to(ScalarType.Float32);
                }
                var oscillating = increases.le(k * Rho);
                // Condition 2: the step size was not reduced at the last checkpoint and the best loss did not improve.
                var noImprovement = reducedLastCheck.logical_not().logical_and(lossBestLastCheck.ge(lossBest));
                var reduce = oscillating.logical_or(noImprovement);
                reducedLastCheck = reduce;
                lossBestLastCheck = lossBest.clone();
                var reduce4 = reduce.view(-1, 1, 1, 1);
                stepSize = where(reduce4, stepSize / 2, stepSize);
                xAdv = where(reduce4, xBest, xAdv);
                grad = where(reduce4, gradBest, grad);
                k = Math.Max(k - spacingDecrease, minSpacing);
                sinceCheckpoint = 0;
            }
            // Keep memory flat over the iterations: free every temporary of this iteration, keep the state.
            scope.DisposeEverythingBut(
                xAdv,
                xAdvOld,
                xBest,
                xBestAdv,
                grad,
                gradBest,
                correct,
                lossBest,
                lossSteps,
                stepSize,
                lossBestLastCheck,
                reducedLastCheck
            );
        }
        return (correct.logical_not().MoveToOuterDisposeScope(), xBestAdv.MoveToOuterDisposeScope());
    }

    /// <summary>x divided by its per-example norm (l-inf: max |x|; l-2: Euclidean), plus 1e-12 as in the authors'
    /// code.</summary>
    private Tensor UnitNormalize(Tensor v)
    {
        using var scope = NewDisposeScope();
        var norm = Threat.Norm == Norm.Linf ? v.flatten(1).abs().amax([1]) : v.flatten(1).pow(2).sum(1).sqrt();
        return (v / (norm.view(-1, 1, 1, 1) + 1e-12)).MoveToOuterDisposeScope();
    }
}
