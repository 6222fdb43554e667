using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// Sanity checks around a robustness evaluation, in the spirit of AutoAttack's checks module: returned
/// examples must lie in the threat model; a randomised model, probabilities instead of logits, or zero input gradients
/// each make the standard evaluation unreliable and are reported as warnings; so is a black-box attack that still
/// breaks points the white-box attacks missed (a sign of gradient masking).
/// </summary>
public static class Checks
{
    /// <summary>Throws when any example leaves the ball around its clean point or the [0,1] box (always a
    /// bug).</summary>
    public static void InsideThreatModel(ThreatModel threat, Tensor adv, Tensor x)
    {
        using var scope = NewDisposeScope();
        double tolerance = 1e-5 * Math.Max(1, threat.Epsilon);
        double maxNorm = threat.NormOf(adv - x).max().item<float>();
        if (maxNorm > threat.Epsilon + tolerance)
            throw new InvalidOperationException(
                $"attack returned a perturbation of norm {maxNorm} > eps {threat.Epsilon}"
            );
        if (adv.min().item<float>() < 0 || adv.max().item<float>() > 1)
            throw new InvalidOperationException("attack returned pixels outside [0,1]");
    }

    /// <summary>Whether two forward passes on the same inputs differ (eval mode): a randomised defence.</summary>
    public static bool IsRandomised(Classifier model, Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return model.call(x).sub(model.call(x)).abs().max().item<float>() != 0;
    }

    /// <summary>Whether the outputs look like probabilities (rows in [0,1] summing to 1) rather than logits.</summary>
    public static bool OutputsProbabilities(Classifier model, Tensor x)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var z = model.call(x);
        return z.min().item<float>() >= 0
            && z.max().item<float>() <= 1
            && (z.sum(1) - 1).abs().max().item<float>() < 1e-4;
    }

    /// <summary>The fraction of points whose cross-entropy gradient with respect to the input is exactly
    /// zero.</summary>
    public static double ZeroGradientFraction(Classifier model, Tensor x, Tensor y)
    {
        using var scope = NewDisposeScope();
        using var mode = new AttackMode(model);
        var input = x.detach().requires_grad_(true);
        var loss = nn.functional.cross_entropy(model.call(input), y, reduction: nn.Reduction.Sum);
        var grad = torch.autograd.grad([loss], [input])[0];
        return grad.flatten(1).abs().amax([1]).eq(0).to(ScalarType.Float32).mean().item<float>();
    }

    /// <summary>
    /// The warnings of the checks that run before an evaluation, on a sample of points (<paramref
    /// name="expectRandom"/>: the evaluation is made for randomised models, such as AutoAttack's rand version).
    /// </summary>
    public static List<string> BeforeEvaluation(Classifier model, Tensor x, Tensor y, bool expectRandom)
    {
        var warnings = new List<string>();
        if (!expectRandom && IsRandomised(model, x))
            warnings.Add(
                "the model's output changes between two identical forward passes: it looks randomised; "
                    + "use the rand version (expectation over transformation)"
            );
        if (OutputsProbabilities(model, x))
            warnings.Add(
                "the model's outputs look like probabilities, not logits: the DLR and margin losses assume logits"
            );
        double zero = ZeroGradientFraction(model, x, y);
        if (zero > 0)
            warnings.Add(
                $"the input gradient is exactly zero for {zero:P1} of the points: gradient-based attacks cannot move "
                    + "them (gradient masking?); trust the black-box attack's numbers more"
            );
        return warnings;
    }

    /// <summary>
    /// Gradient masking after the fact: a gradient-free attack that runs after the white-box ones should break at most
    /// a few more points (AutoAttack's threshold: 0.2% of all points).
    /// </summary>
    public static string? BlackBoxAfterWhiteBox(string attack, int robustBefore, int robustAfter, int points)
    {
        int extra = robustBefore - robustAfter;
        return extra > 0.002 * points
            ? $"{attack} (a black-box attack) broke {extra} points the white-box attacks missed: a sign of gradient "
                + "masking; treat the white-box numbers with suspicion"
            : null;
    }
}
