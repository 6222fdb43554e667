using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>
/// Adam (Kingma &amp; Ba 2015, Algorithm 1; PyTorch's semantics without weight decay): m = b1 m + (1 - b1) g, v = b2 v
/// + (1 - b2) g^2, p -= lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps). Written here so that its moment buffers are
/// plain named tensors that go into the generator's checkpoint, and a resumed run continues with the same state.
/// </summary>
public sealed class Adam : IDisposable
{
    private readonly (string Name, Parameter Param, Tensor M, Tensor V)[] _state;
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }

    /// <summary>Steps taken (k in the bias corrections).</summary>
    public long Steps { get; set; }

    public Adam(nn.Module model, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8)
    {
        (Beta1, Beta2, Epsilon) = (beta1, beta2, epsilon);
        _state = model
            .named_parameters()
            .Where(p => p.parameter.requires_grad)
            .Select(p =>
                (
                    p.name,
                    p.parameter,
                    zeros_like(p.parameter).DetachFromDisposeScope(),
                    zeros_like(p.parameter).DetachFromDisposeScope()
                )
            )
            .ToArray();
    }

    public void Step(double lr)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        Steps++;
        double c1 = 1 - Math.Pow(Beta1, Steps),
            c2 = 1 - Math.Pow(Beta2, Steps);
        foreach (var (_, p, m, v) in _state)
        {
            var g = p.grad;
            if (g is null)
                continue;
            m.mul_(Beta1).add_(g, 1 - Beta1);
            v.mul_(Beta2).addcmul_(g, g, 1 - Beta2);
            var denominator = (v / c2).sqrt_().add_(Epsilon);
            p.addcdiv_(m, denominator, -lr / c1);
        }
    }

    /// <summary>Scales the gradients so that their global l-2 norm is at most <paramref name="maxNorm"/>; returns the
    /// norm before.</summary>
    public double ClipGradients(double maxNorm)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var grads = _state.Select(s => s.Param.grad).OfType<Tensor>().ToArray();
        if (grads.Length == 0)
            return 0;
        double norm = stack(grads.Select(g => g.pow(2).sum())).sum().sqrt().item<float>();
        if (norm > maxNorm)
            foreach (var g in grads)
                g.mul_(maxNorm / (norm + 1e-6));
        return norm;
    }

    /// <summary>First and second moment buffers by parameter name (for checkpoints).</summary>
    public IEnumerable<(string Name, Tensor Buffer)> Buffers() =>
        _state.SelectMany(s => new[] { ("m." + s.Name, s.M), ("v." + s.Name, s.V) });

    public void Dispose()
    {
        foreach (var s in _state)
        {
            s.M.Dispose();
            s.V.Dispose();
        }
    }
}
