using ProxyRobust.Attacks;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>The part of training that varies between methods: the loss of one batch.</summary>
public interface ITrainingObjective
{
    string Name { get; }

    /// <summary>
    /// Loss to minimise (scalar, differentiable w.r.t. the weights) and the logits it was computed from
    /// (adversarial logits for adversarial training). <paramref name="weights"/> holds one non-negative weight per
    /// example, summing to 1: it is how real and synthetic examples are balanced (PORT's gamma).
    /// </summary>
    (Tensor Loss, Tensor Logits) Loss(Classifier model, Tensor images, Tensor labels, Tensor weights);
}

internal static class WeightedLoss
{
    public static Tensor CrossEntropy(Tensor logits, Tensor labels, Tensor weights, double labelSmoothing = 0) =>
        (
            nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.None, label_smoothing: labelSmoothing)
            * weights
        ).sum();
}

/// <summary>Standard (clean) training: cross-entropy, optionally with label smoothing.</summary>
public sealed class CrossEntropyObjective(double labelSmoothing = 0) : ITrainingObjective
{
    public string Name => "standard";

    public (Tensor Loss, Tensor Logits) Loss(Classifier model, Tensor images, Tensor labels, Tensor weights)
    {
        var logits = model.call(images);
        return (WeightedLoss.CrossEntropy(logits, labels, weights, labelSmoothing), logits);
    }
}

/// <summary>
/// Adversarial training (Madry et al. 2018): minimise the cross-entropy at the attack's adversarial examples. With
/// <see cref="Pgd"/> it is PGD-AT; with <see cref="Fgsm"/> and a random start it is "fast" FGSM-RS training.
/// </summary>
public sealed class AdversarialObjective(IAttack attack, string name, double labelSmoothing = 0) : ITrainingObjective
{
    public string Name => name;
    public IAttack Attack => attack;

    public (Tensor Loss, Tensor Logits) Loss(Classifier model, Tensor images, Tensor labels, Tensor weights)
    {
        var adv = attack.Perturb(model, images, labels);
        var logits = model.call(adv);
        return (WeightedLoss.CrossEntropy(logits, labels, weights, labelSmoothing), logits);
    }
}

/// <summary>
/// TRADES (Zhang et al. 2019, eq. 5): CE(f(x), y) + beta * KL(f(x) || f(x')), where x' maximises the KL term by PGD
/// started at x + 0.001 N(0, I). The returned logits are those at x'.
/// </summary>
public sealed class TradesObjective(ThreatModel threat, int steps, double stepSize, double beta) : ITrainingObjective
{
    public string Name => $"trades (beta {beta})";

    public (Tensor Loss, Tensor Logits) Loss(Classifier model, Tensor images, Tensor labels, Tensor weights)
    {
        var naturalLogits = model.call(images);
        Tensor adv;
        using (var mode = new AttackMode(model))
        using (var scope = NewDisposeScope())
        {
            var target = nn.functional.softmax(naturalLogits.detach(), 1);
            var a = (images + randn_like(images) * 0.001).clamp(0, 1);
            for (int t = 0; t < steps; t++)
            {
                var input = a.detach().requires_grad_(true);
                var kl = nn.functional.kl_div(
                    nn.functional.log_softmax(model.call(input), 1),
                    target,
                    reduction: nn.Reduction.Sum,
                    log_target: false
                );
                var grad = torch.autograd.grad([kl], [input])[0];
                a = threat.Project(threat.Step(input.detach(), grad, stepSize), images);
            }
            adv = a.detach().MoveToOuterDisposeScope();
        }
        var advLogits = model.call(adv);
        return (LossAt(naturalLogits, advLogits, labels, weights, beta), advLogits);
    }

    /// <summary>
    /// The TRADES loss (eq. 5) given the logits at x and at x': sum_i w_i [CE(f(x_i), y_i) + beta KL(f(x_i) ||
    /// f(x'_i))].
    /// TorchSharp's kl_div defaults to log_target = true (PyTorch's to false): the target here is probabilities, so say
    /// so.
    /// </summary>
    public static Tensor LossAt(Tensor naturalLogits, Tensor advLogits, Tensor labels, Tensor weights, double beta)
    {
        var naturalLoss = nn.functional.cross_entropy(naturalLogits, labels, reduction: nn.Reduction.None);
        var robustLoss = nn
            .functional.kl_div(
                nn.functional.log_softmax(advLogits, 1),
                nn.functional.softmax(naturalLogits, 1),
                reduction: nn.Reduction.None,
                log_target: false
            )
            .sum(1);
        return ((naturalLoss + robustLoss * beta) * weights).sum();
    }
}

/// <summary>Gaussian data augmentation (Cohen et al. 2019): cross-entropy at x + sigma N(0, I), the base classifier of
/// randomized smoothing.</summary>
public sealed class GaussianNoiseObjective(double sigma) : ITrainingObjective
{
    public string Name => $"gaussian (sigma {sigma})";

    public (Tensor Loss, Tensor Logits) Loss(Classifier model, Tensor images, Tensor labels, Tensor weights)
    {
        // No clamping to [0,1]: the smoothed classifier is defined on unclipped noise.
        var logits = model.call(images + randn_like(images) * sigma);
        return (WeightedLoss.CrossEntropy(logits, labels, weights), logits);
    }
}
