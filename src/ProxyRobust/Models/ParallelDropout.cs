using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>
/// Inverted dropout (Srivastava et al. 2014) whose mask is drawn on all cores. libtorch 2.10's dropout draws its
/// Bernoulli numbers with a serial kernel (one thread, torch's Mersenne Twister): 27 ms forward and backward on one
/// 128x32x28x28 activation on 2 cores against 9 ms here, about 150 ms of a diffusion UNet's 1.4 s training step
/// (bench/RESULTS.md); PyTorch 1.13 used MKL's parallel generator. Here each element keeps its value with probability
/// q = 1 - p, decided by a counter-based generator: SplitMix64's output function (Steele et al. 2014) of (seed, element
/// index), 32 bits per element, so the mask does not depend on the thread count or on how the work is split. The seed
/// is one number drawn from torch's global generator, so torch.manual_seed still fixes the masks (a resumed run draws
/// the same). Kept values are scaled by 2^32 / threshold, the exact inverse of the quantised keep probability, so the
/// mask's mean is exactly 1.
/// </summary>
public sealed class ParallelDropout : nn.Module<Tensor, Tensor>
{
    private readonly double p;

    public ParallelDropout(double p)
        : base(nameof(ParallelDropout))
    {
        if (p is < 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(p), p, "dropout must be in [0, 1)");
        this.p = p;
    }

    public override Tensor forward(Tensor x)
    {
        if (!training || p == 0)
            return x.alias();
        if (x.device.type != DeviceType.CPU || x.dtype != ScalarType.Float32)
            return nn.functional.dropout(x, p, training: true);
        using var seed = randint(long.MaxValue, [1], dtype: ScalarType.Int64);
        using var mask = Mask(x.shape, p, (ulong)seed.item<long>());
        return x * mask;
    }

    /// <summary>The mask for <paramref name="shape"/>: 0 where dropped, 2^32 / threshold where kept, element i kept
    /// when the low or high 32 bits (even or odd i) of Mix(seed, i / 2) fall below threshold = round(q 2^32).</summary>
    internal static unsafe Tensor Mask(long[] shape, double p, ulong seed)
    {
        var mask = empty(shape, ScalarType.Float32);
        long n = mask.numel();
        ulong threshold = (ulong)Math.Round((1 - p) * 4294967296.0);
        float kept = (float)(4294967296.0 / threshold);
        var address = TensorCollectives.Address(mask);
        const long block = 1 << 16; // elements per task, even
        long blocks = (n + block - 1) / block;
        Parallel.For(
            0,
            blocks,
            b =>
            {
                float* values = (float*)address;
                long from = b * block,
                    to = Math.Min(n, from + block);
                for (long i = from; i < to; i += 2)
                {
                    ulong r = Mix(seed, (ulong)i >> 1);
                    values[i] = (r & 0xFFFFFFFF) < threshold ? kept : 0f;
                    if (i + 1 < to)
                        values[i + 1] = (r >> 32) < threshold ? kept : 0f;
                }
            }
        );
        return mask;
    }

    /// <summary>SplitMix64's output function applied to the counter's state: the generator's value number
    /// <paramref name="counter"/> + 1 from <paramref name="seed"/>.</summary>
    internal static ulong Mix(ulong seed, ulong counter)
    {
        ulong z = seed + (counter + 1) * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
