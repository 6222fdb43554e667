using ProxyRobust.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>Collectives on tensors, and the one place that turns a tensor into a native address (what MPI reads and
/// ParallelDropout writes; here, beside the networks, because synchronised batch norm needs the differentiable
/// sum).</summary>
public static class TensorCollectives
{
    /// <summary>Replaces a contiguous float32 CPU tensor's values by their sum over all ranks, in place (chunks of
    /// 2^28 values: an MPI count is an int).</summary>
    public static void SumInPlace(this IRanks ranks, Tensor t, long offset = 0, long? count = null)
    {
        if (t.device.type != DeviceType.CPU || !t.is_contiguous() || t.dtype != ScalarType.Float32)
            throw new ArgumentException("expected a contiguous float32 CPU tensor");
        long n = count ?? t.numel() - offset;
        IntPtr start = Address(t) + (nint)(offset * sizeof(float));
        const long chunk = 1 << 28;
        for (long done = 0; done < n; done += chunk)
            ranks.SumInPlace(start + (nint)(done * sizeof(float)), (int)Math.Min(chunk, n - done));
    }

    /// <summary>The native address of a CPU tensor's first element. Its storage is native memory, which the garbage
    /// collector never moves, so the address stays valid for as long as the tensor lives.</summary>
    public static unsafe IntPtr Address(Tensor t)
    {
        fixed (byte* p = t.bytes)
            return (IntPtr)p;
    }

    /// <summary>The sum of <paramref name="t"/> over all ranks as a new tensor that autograd can differentiate: every
    /// rank's output is the same sum, so the gradient reaching each rank's input is the sum of the output gradients of
    /// all ranks (a second all-reduce in the backward pass). Every rank must call it the same number of times in the
    /// same order, forward and backward.</summary>
    public static Tensor SumAcrossRanks(this IRanks ranks, Tensor t) => RankSum.apply(t, ranks);

    private sealed class RankSum : autograd.SingleTensorFunction<RankSum>
    {
        public override string Name => nameof(RankSum);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var ranks = (IRanks)vars[1];
            ctx.save_data("ranks", ranks);
            var sum = ((Tensor)vars[0]).to(ScalarType.Float32).contiguous().clone();
            ranks.SumInPlace(sum);
            return sum;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var sum = gradOutput.contiguous().clone();
            ((IRanks)ctx.get_data("ranks")).SumInPlace(sum);
            return [sum, null!];
        }
    }
}
