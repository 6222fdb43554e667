using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

public enum Norm
{
    Linf,
    L2,
}

/// <summary>The set of allowed perturbations: an l-inf or l-2 ball of radius Epsilon around the input, inside the [0,1]
/// box.</summary>
public sealed record ThreatModel(Norm Norm, double Epsilon)
{
    public static Norm ParseNorm(string s) =>
        s.ToLowerInvariant() switch
        {
            "linf" or "l-inf" or "inf" => Norm.Linf,
            "l2" or "l-2" => Norm.L2,
            _ => throw new ArgumentException($"norm must be linf or l2, not '{s}'"),
        };

    /// <summary>Per-example norm of a batch of perturbations (shape [N]).</summary>
    public Tensor NormOf(Tensor delta) =>
        Norm == Norm.Linf ? delta.flatten(1).abs().amax([1]) : delta.flatten(1).norm(1, keepdim: false, p: 2);

    /// <summary>Projects <paramref name="adv"/> onto the ball around <paramref name="x"/> intersected with
    /// [0,1].</summary>
    public Tensor Project(Tensor adv, Tensor x)
    {
        using var scope = NewDisposeScope();
        var delta = adv - x;
        if (Norm == Norm.Linf)
            delta = delta.clamp(-Epsilon, Epsilon);
        else
        {
            var n = delta.flatten(1).norm(1, keepdim: false, p: 2).clamp_min(1e-12);
            var factor = (Epsilon / n).clamp_max(1.0);
            delta = delta * factor.view(-1, 1, 1, 1);
        }
        // Clamping to the box after the ball keeps the l-inf ball exactly; for l-2 it can only shrink the norm.
        return (x + delta).clamp(0, 1).MoveToOuterDisposeScope();
    }

    /// <summary>A random point of the ball around x (uniform per coordinate for l-inf; random direction and radius for
    /// l-2), in the box.</summary>
    public Tensor RandomStart(Tensor x, Generator generator)
    {
        using var scope = NewDisposeScope();
        Tensor delta;
        if (Norm == Norm.Linf)
            delta = (rand(x.shape, dtype: x.dtype, device: x.device, generator: generator) * 2 - 1) * Epsilon;
        else
        {
            var g = randn(x.shape, dtype: x.dtype, device: x.device, generator: generator);
            var n = g.flatten(1).norm(1, keepdim: false, p: 2).clamp_min(1e-12).view(-1, 1, 1, 1);
            var r = rand([x.shape[0], 1, 1, 1], dtype: x.dtype, device: x.device, generator: generator);
            delta = g / n * r * Epsilon;
        }
        return (x + delta).clamp(0, 1).MoveToOuterDisposeScope();
    }

    /// <summary>The steepest-ascent step of size <paramref name="stepSize"/> for this norm: sign(g) for l-inf, g/||g||
    /// for l-2.</summary>
    public Tensor Step(Tensor adv, Tensor grad, double stepSize)
    {
        using var scope = NewDisposeScope();
        Tensor dir =
            Norm == Norm.Linf
                ? grad.sign()
                : grad / grad.flatten(1).norm(1, keepdim: false, p: 2).clamp_min(1e-12).view(-1, 1, 1, 1);
        return (adv + dir * stepSize).MoveToOuterDisposeScope();
    }

    public override string ToString() => $"{(Norm == Norm.Linf ? "l-inf" : "l-2")} eps={Epsilon:G4}";
}
