using ProxyRobust.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Data;

/// <summary>Collectives on tensors: the one place that turns a tensor into the native address MPI reads.</summary>
public static class TensorCollectives
{
    /// <summary>Replaces a contiguous float32 CPU tensor's values by their sum over all ranks, in place (chunks of
    /// 2^28 values: an MPI count is an int). Its storage is native memory, which the garbage collector never moves, so
    /// the address stays valid after the fixed block for as long as the tensor lives.</summary>
    public static unsafe void SumInPlace(this IRanks ranks, Tensor t, long offset = 0, long? count = null)
    {
        if (t.device.type != DeviceType.CPU || !t.is_contiguous() || t.dtype != ScalarType.Float32)
            throw new ArgumentException("expected a contiguous float32 CPU tensor");
        long n = count ?? t.numel() - offset;
        IntPtr start;
        fixed (byte* p = t.bytes)
            start = (IntPtr)(p + offset * sizeof(float));
        const long chunk = 1 << 28;
        for (long done = 0; done < n; done += chunk)
            ranks.SumInPlace(start + (nint)(done * sizeof(float)), (int)Math.Min(chunk, n - done));
    }
}
