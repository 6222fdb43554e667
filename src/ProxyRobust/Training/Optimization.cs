using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>
/// SGD with momentum and weight decay, PyTorch's semantics (dampening 0): g = grad + wd * p; m = mu * m + g;
/// p -= lr * (nesterov ? g + mu * m : m). Written here so that its momentum buffers are plain named tensors
/// that go into the checkpoint next to the weights.
/// </summary>
public sealed class Sgd : IDisposable
{
    private readonly (string Name, Parameter Param, Tensor Momentum)[] _state;
    public double Momentum { get; }
    public double WeightDecay { get; }
    public bool Nesterov { get; }

    public Sgd(nn.Module model, double momentum, double weightDecay, bool nesterov)
    {
        Momentum = momentum;
        WeightDecay = weightDecay;
        Nesterov = nesterov;
        _state = model
            .named_parameters()
            .Where(p => p.parameter.requires_grad)
            .Select(p => (p.name, p.parameter, zeros_like(p.parameter).DetachFromDisposeScope()))
            .ToArray();
    }

    public void Step(double lr)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var (_, p, m) in _state)
        {
            var grad = p.grad;
            if (grad is null)
                continue;
            var g = WeightDecay != 0 ? grad.add(p, WeightDecay) : grad;
            m.mul_(Momentum).add_(g);
            p.add_(Nesterov ? g.add(m, Momentum) : m, -lr);
        }
    }

    /// <summary>Momentum buffers by parameter name (for checkpoints).</summary>
    public IEnumerable<(string Name, Tensor Buffer)> Buffers() => _state.Select(s => (s.Name, s.Momentum));

    public void Dispose()
    {
        foreach (var s in _state)
            s.Momentum.Dispose();
    }
}

/// <summary>Per-iteration learning rate: linear warm-up from 0, then cosine decay to 0 (as in the paper's
/// code).</summary>
public sealed record CosineSchedule(double BaseLr, long TotalSteps, long WarmupSteps)
{
    public double At(long step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps)
            return BaseLr * (step + 1) / WarmupSteps;
        long span = Math.Max(1, TotalSteps - WarmupSteps);
        double t = Math.Clamp((double)(step - WarmupSteps) / span, 0, 1);
        return 0.5 * BaseLr * (1 + Math.Cos(Math.PI * t));
    }
}

/// <summary>Exponential moving average of the weights; buffers (BatchNorm statistics) are copied.</summary>
public sealed class WeightAverage(nn.Module source, nn.Module average, double decay)
{
    public double Decay => decay;
    public nn.Module Average => average;

    public void Update()
    {
        using var noGrad = no_grad();
        var src = source.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in average.named_parameters())
            p.mul_(decay).add_(src[name], 1 - decay);
        var srcBuffers = source.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        foreach (var (name, b) in average.named_buffers())
            b.copy_(srcBuffers[name]);
    }
}
