using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>An attack: images in [0,1] and labels in, adversarial images (same shape, inside the threat model)
/// out.</summary>
public interface IAttack
{
    string Name { get; }
    ThreatModel Threat { get; }
    Tensor Perturb(Classifier model, Tensor images, Tensor labels);

    /// <summary>The same attack with another seed (evaluation gives every batch its own).</summary>
    IAttack WithSeed(long seed);

    /// <summary>
    /// The same attack reporting the fraction of its work done on a batch (0..1) now and then, so that a long attack on
    /// one batch still shows progress. Attacks that finish quickly keep the default: no reports.
    /// </summary>
    IAttack WithProgress(IProgress<double>? progress) => this;
}

public enum AttackLoss
{
    CrossEntropy,
    Margin,

    /// <summary>The probability margin max_{j!=y} p_j - p_y of the softmax (Xie et al. 2024).</summary>
    ProbabilityMargin,
}

/// <summary>
/// Puts a model into attack mode for its lifetime: eval mode (BatchNorm uses running statistics) and every parameter
/// with requires_grad off, so backward passes compute input gradients only, never weight gradients. Restores both.
/// </summary>
public sealed class AttackMode : IDisposable
{
    private readonly Classifier _model;
    private readonly bool _wasTraining;
    private readonly List<(TorchSharp.Modules.Parameter P, bool RequiresGrad)> _params;

    public AttackMode(Classifier model)
    {
        _model = model;
        _wasTraining = model.training;
        _params = model.parameters().Select(p => (p, p.requires_grad)).ToList();
        model.eval();
        foreach (var (p, _) in _params)
            p.requires_grad = false;
    }

    public void Dispose()
    {
        foreach (var (p, r) in _params)
            p.requires_grad = r;
        _model.train(_wasTraining);
    }
}

/// <summary>Bookkeeping shared by the attacks that run in passes over the points still robust (APGD, FAB, Square,
/// AutoAttack).</summary>
public static class RobustPoints
{
    /// <summary>Clean logits of a batch: which points are classified correctly, and every point's classes ranked by
    /// logit
    /// (descending: column 1 is the 2nd most likely class, the first target of APGD-T and FAB-T).</summary>
    public static (Tensor Robust, Tensor Ranked) Clean(Classifier model, Tensor x, Tensor labels)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = model.call(x);
        return (
            logits.argmax(1).eq(labels).MoveToOuterDisposeScope(),
            logits.argsort(1, descending: true).MoveToOuterDisposeScope()
        );
    }

    /// <summary>
    /// After a pass over the points <paramref name="todo"/> (indices into the batch): those where <paramref
    /// name="broken"/> holds are no longer robust, and their adversarial example is the pass's. Returns their batch
    /// indices.
    /// </summary>
    public static Tensor MarkBroken(Tensor robust, Tensor adversarial, Tensor todo, Tensor broken, Tensor passResult)
    {
        var hit = todo.masked_select(broken);
        robust.index_fill_(0, hit, false);
        using var brokenIdx = broken.nonzero().view(-1);
        adversarial.index_copy_(0, hit, passResult.index_select(0, brokenIdx));
        return hit;
    }
}

public static class AttackLosses
{
    /// <summary>
    /// Per-example loss the attack ascends. Untargeted: cross-entropy, or the margin max_{j!=y} z_j - z_y
    /// (Carlini-Wagner).
    /// Targeted (towards <paramref name="labels"/> = targets): the negated cross-entropy, or z_t - max_{j!=t} z_j.
    /// </summary>
    public static Tensor PerExample(Tensor logits, Tensor labels, AttackLoss loss, bool targeted)
    {
        using var scope = NewDisposeScope();
        Tensor value;
        if (loss == AttackLoss.CrossEntropy)
            value = nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.None);
        else if (loss == AttackLoss.ProbabilityMargin)
            value = -ProbabilityMargin(logits, labels);
        else
        {
            var onehot = nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype);
            var labelLogit = (logits * onehot).sum(1);
            var otherMax = (logits - onehot * 1e9).amax([1]);
            value = otherMax - labelLogit;
        }
        return (targeted ? -value : value).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Difference-of-logits-ratio loss (Croce &amp; Hein 2020, eq. 5): -(z_y - max_{i!=y} z_i) / (z_pi1 -
    /// z_pi3), with the logits sorted decreasingly (pi1 the largest). Invariant to shifting and rescaling the logits.
    /// </summary>
    public static Tensor Dlr(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var sorted = logits.sort(1, descending: true).Values;
        var zy = logits.gather(1, labels.view(-1, 1)).squeeze(1);
        var topIsLabel = logits.argmax(1).eq(labels);
        var otherMax = where(topIsLabel, sorted[.., 1], sorted[.., 0]);
        return (-(zy - otherMax) / (sorted[.., 0] - sorted[.., 2] + 1e-12)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Probability margin p_y - max_{j!=y} p_j with p = softmax(z) (Xie et al. 2024, "Towards Million-Scale Adversarial
    /// Robustness Evaluation With Stronger Individual Attacks"): negative exactly where the point is misclassified, and
    /// bounded in [-1, 1], so a point far past the boundary does not dominate the batch as it does with logit margins.
    /// Attacks ascend its negation.
    /// </summary>
    public static Tensor ProbabilityMargin(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var p = nn.functional.softmax(logits, 1);
        var onehot = nn.functional.one_hot(labels, logits.shape[1]).to(ScalarType.Bool);
        var py = p.gather(1, labels.view(-1, 1)).squeeze(1);
        var otherMax = p.masked_fill(onehot, -1.0).amax([1]);
        return (py - otherMax).MoveToOuterDisposeScope();
    }

    /// <summary>Targeted DLR loss (eq. 6): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).</summary>
    public static Tensor TargetedDlr(Tensor logits, Tensor labels, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var sorted = logits.sort(1, descending: true).Values;
        var zy = logits.gather(1, labels.view(-1, 1)).squeeze(1);
        var zt = logits.gather(1, targets.view(-1, 1)).squeeze(1);
        return (-(zy - zt) / (sorted[.., 0] - (sorted[.., 2] + sorted[.., 3]) * 0.5 + 1e-12)).MoveToOuterDisposeScope();
    }

    /// <summary>Whether each example already reaches the attack's goal.</summary>
    public static Tensor Succeeded(Tensor logits, Tensor labels, bool targeted) =>
        targeted ? logits.argmax(1).eq(labels) : logits.argmax(1).ne(labels);
}
