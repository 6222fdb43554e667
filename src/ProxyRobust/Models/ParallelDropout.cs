using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>
/// Inverted dropout (Srivastava et al. 2014) whose mask is drawn on all of torch's threads, 16 elements per vector
/// step. libtorch 2.10's dropout draws its Bernoulli numbers with a serial kernel (one thread, torch's Mersenne
/// Twister): 26 ms forward and backward on one 128x32x28x28 activation on 2 cores against 3.5 ms here, about 150 ms of
/// a diffusion UNet's 1.4 s training step (bench/RESULTS.md); PyTorch 1.13 used MKL's parallel generator. Here each
/// element keeps its value with probability q = 1 - p, decided by a counter-based generator: SplitMix64's output
/// function (Steele et al. 2014) of (seed, element index), 32 bits per element, so the mask does not depend on the
/// thread count or on how the work is split. The seed is one number drawn from torch's global generator, so
/// torch.manual_seed still fixes the masks (a resumed run draws the same). Kept values are scaled by 2^32 / threshold,
/// the exact inverse of the quantised keep probability, so the mask's mean is exactly 1.
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
        if (!x.is_contiguous() && Classifier.IsChannelsLast(x))
        {
            // A channels-last activation gets its mask in the same memory order, so the product is one pass over
            // both in step (an NCHW mask would make libtorch walk one of them with strides).
            using var nhwc = Mask([x.shape[0], x.shape[2], x.shape[3], x.shape[1]], p, (ulong)seed.item<long>());
            using var channelsLast = nhwc.permute(0, 3, 1, 2);
            return x * channelsLast;
        }
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
        CpuParallel.For(
            blocks,
            b => Fill((float*)address, b * block, Math.Min(n, (b + 1) * block), seed, threshold, kept)
        );
        return mask;
    }

    /// <summary>Mask elements [from, to) (from even): kept or 0 by Mix(seed, i / 2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a hot loop: no slow first tier
    private static unsafe void Fill(float* values, long from, long to, ulong seed, ulong threshold, float kept)
    {
        long i = from;
        if (threshold <= uint.MaxValue)
        {
            // 16 elements from 8 draws at a time: a draw's 32-bit halves, read as two uint lanes, are the low and
            // high halves in element order (little-endian), the scalar loop's definition below.
            var lanes = Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7);
            var below = Vector512.Create((uint)threshold);
            var keep = Vector512.Create(kept);
            for (; i + 16 <= to; i += 16)
            {
                var r = Mix(Vector512.Create(seed), Vector512.Create((ulong)i >> 1) + lanes);
                var kept16 = Vector512.LessThan(r.AsUInt32(), below).AsSingle();
                Vector512.Store(Vector512.ConditionalSelect(kept16, keep, Vector512<float>.Zero), values + i);
            }
        }
        for (; i < to; i += 2)
        {
            ulong r = Mix(seed, (ulong)i >> 1);
            values[i] = (r & 0xFFFFFFFF) < threshold ? kept : 0f;
            if (i + 1 < to)
                values[i + 1] = (r >> 32) < threshold ? kept : 0f;
        }
    }

    /// <summary><see cref="Mix(ulong, ulong)"/> on 8 counters at once.</summary>
    private static Vector512<ulong> Mix(Vector512<ulong> seed, Vector512<ulong> counter)
    {
        var z = seed + (counter + Vector512<ulong>.One) * Vector512.Create(0x9E3779B97F4A7C15UL);
        z = (z ^ Vector512.ShiftRightLogical(z, 30)) * Vector512.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ Vector512.ShiftRightLogical(z, 27)) * Vector512.Create(0x94D049BB133111EBUL);
        return z ^ Vector512.ShiftRightLogical(z, 31);
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
