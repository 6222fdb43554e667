using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;
using Module = TorchSharp.torch.nn.Module;
using Parameter = TorchSharp.Modules.Parameter;

namespace ProxyRobust.Training;

/// <summary>
/// Synchronous data parallelism for one model: every rank computes the gradient of its share of the global batch's
/// loss, and <see cref="Reduce"/> replaces each rank's gradients by their sum over the ranks, so all ranks take the
/// same optimizer step. Because PORT's per-example weights sum to 1 over the global batch (<see cref="PortMixing"/>),
/// the sum of the ranks' partial losses is the global loss, and the summed gradient is the one a single process
/// computes on the whole batch. Gradients travel as flat float32 buckets (one MPI_Allreduce each, in place), with a few
/// statistics appended to the last bucket, so that a step costs one collective at most sizes.
/// </summary>
internal sealed class GradientSync : IDisposable
{
    /// <summary>Floats per bucket (16 MB): large enough that latency is paid rarely, small enough that the staging
    /// copy stays modest for a ResNet.</summary>
    internal const int BucketFloats = 4 << 20;

    private readonly IRanks ranks;
    private readonly Parameter[] parameters;
    private readonly Tensor buffer;
    private readonly int extras;
    private readonly List<(int Start, int Count)> buckets = [];
    private readonly System.Diagnostics.Stopwatch communication = new();

    /// <summary>Seconds spent in the all-reduce calls (waiting for the slowest rank included).</summary>
    public double Seconds => communication.Elapsed.TotalSeconds;

    public long Reductions { get; private set; }
    public long BytesPerReduction => buffer.numel() * sizeof(float);

    public GradientSync(Module model, IRanks ranks, int extras)
    {
        this.ranks = ranks;
        this.extras = extras;
        parameters = [.. model.parameters().Where(p => p.requires_grad)];
        long total = parameters.Sum(p => p.numel()) + extras;
        if (total > int.MaxValue)
            throw new NotSupportedException($"{total} parameters do not fit one gradient buffer");
        buffer = zeros(total, dtype: ScalarType.Float32);
        for (int start = 0; start < total; start += BucketFloats)
            buckets.Add((start, (int)Math.Min(BucketFloats, total - start)));
    }

    /// <summary>Sums every rank's gradients (a parameter without one counts as zero and receives the sum) and
    /// <paramref name="stats"/> over the ranks, in place.</summary>
    public void Reduce(float[] stats)
    {
        if (stats.Length != extras)
            throw new ArgumentException($"expected {extras} statistics, got {stats.Length}");
        using var scope = NewDisposeScope();
        long offset = 0;
        foreach (var p in parameters)
        {
            long n = p.numel();
            var slot = buffer.narrow(0, offset, n);
            if (p.grad is { } g)
                slot.copy_(g.reshape(-1));
            else
                slot.zero_();
            offset += n;
        }
        var tail = buffer.narrow(0, offset, extras);
        tail.copy_(tensor(stats));
        communication.Start();
        foreach (var (start, count) in buckets)
            ranks.SumInPlace(buffer, start, count);
        communication.Stop();
        Reductions++;
        offset = 0;
        foreach (var p in parameters)
        {
            long n = p.numel();
            var summed = buffer.narrow(0, offset, n).view(p.shape);
            if (p.grad is { } g)
                g.copy_(summed);
            else
                p.grad = summed.to(p.device).clone().DetachFromDisposeScope();
            offset += n;
        }
        tail.data<float>().CopyTo(stats, 0);
    }

    /// <summary>Gives every rank rank 0's parameters and floating-point buffers (batch-norm statistics): the other
    /// ranks zero theirs, then all sum.</summary>
    public void BroadcastFromRoot(Module model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var t in model.parameters().Cast<Tensor>().Concat(model.buffers()))
        {
            if (t.dtype != ScalarType.Float32)
                continue;
            var host = t.device.type == DeviceType.CPU && t.is_contiguous() ? t : t.cpu().contiguous();
            if (!ranks.IsRoot)
                host.zero_();
            ranks.SumInPlace(host);
            if (!ReferenceEquals(host, t))
                t.copy_(host);
        }
    }

    public void Dispose() => buffer.Dispose();
}
