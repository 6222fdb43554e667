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
        var mask = DrawMask();
        if (!x.is_contiguous() && Classifier.IsChannelsLast(x))
        {
            // A channels-last activation gets its mask in the same memory order, so the product is one pass over
            // both in step (an NCHW mask would make libtorch walk one of them with strides).
            using var nhwc = Mask([x.shape[0], x.shape[2], x.shape[3], x.shape[1]], mask);
            using var channelsLast = nhwc.permute(0, 3, 1, 2);
            return x * channelsLast;
        }
        using var values = Mask(x.shape, mask);
        return x * values;
    }

    /// <summary>This call's mask (one seed drawn from torch's global generator), or an inactive one (nothing drawn)
    /// where the module passes its input through: in evaluation, or with p = 0. <see cref="GroupNormSilu"/> applies it
    /// inside its own kernel, element by element in NHWC memory order, as <see cref="forward"/> would.</summary>
    internal DropoutMask DrawMask()
    {
        if (!training || p == 0)
            return default;
        using var seed = randint(long.MaxValue, [1], dtype: ScalarType.Int64);
        return new DropoutMask(p, (ulong)seed.item<long>());
    }

    /// <summary>The mask for <paramref name="shape"/> as values: 0 where dropped, <see cref="DropoutMask.Kept"/> where
    /// kept (<see cref="DropoutMask"/> says which).</summary>
    internal static unsafe Tensor Mask(long[] shape, DropoutMask mask)
    {
        var values = empty(shape, ScalarType.Float32);
        long n = values.numel();
        var address = TensorCollectives.Address(values);
        const long block = 1 << 16; // elements per task, even
        long blocks = (n + block - 1) / block;
        CpuParallel.For(blocks, b => Fill((float*)address, b * block, Math.Min(n, (b + 1) * block), mask));
        return values;
    }

    /// <summary>The mask of probability <paramref name="p"/> drawn from <paramref name="seed"/>.</summary>
    internal static Tensor Mask(long[] shape, double p, ulong seed) => Mask(shape, new DropoutMask(p, seed));

    /// <summary>Mask values of elements [from, to) (from even).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a hot loop: no slow first tier
    private static unsafe void Fill(float* values, long from, long to, DropoutMask mask)
    {
        long i = from;
        if (mask.Vectorised)
        {
            for (; i + 16 <= to; i += 16)
                Vector512.Store(mask.Values16(i), values + i);
        }
        for (; i < to; i++)
            values[i] = mask.Value(i);
    }

    /// <summary><see cref="Mix(ulong, ulong)"/> on 8 counters at once.</summary>
    internal static Vector512<ulong> Mix(Vector512<ulong> seed, Vector512<ulong> counter)
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

/// <summary>
/// One dropout call's mask, element by element: element i is kept when the low or high 32 bits (even or odd i) of
/// <see cref="ParallelDropout.Mix(ulong, ulong)"/>(seed, i / 2) fall below threshold = round(q 2^32), q = 1 - p, and a
/// kept element is scaled by <see cref="Kept"/> = 2^32 / threshold. The default value is inactive (every element
/// kept, unscaled).
/// </summary>
internal readonly struct DropoutMask
{
    public readonly ulong Seed;
    public readonly ulong Threshold;
    public readonly float Kept;
    public readonly bool Active;

    public DropoutMask(double p, ulong seed)
    {
        Seed = seed;
        Threshold = (ulong)Math.Round((1 - p) * 4294967296.0);
        Kept = (float)(4294967296.0 / Threshold);
        Active = true;
    }

    /// <summary>Whether <see cref="Values16"/> applies (the threshold fits in 32 bits: p &gt; 0).</summary>
    public bool Vectorised => Active && Threshold <= uint.MaxValue;

    /// <summary>Whether a vector loop can take 16 elements from element <paramref name="i"/> on: no mask at all, or
    /// <see cref="Values16"/>, which starts at an even element.</summary>
    public bool VectorsFrom(long i) => !Active || (Vectorised && i % 2 == 0);

    /// <summary>The value of element <paramref name="i"/>: 0 or <see cref="Kept"/> (1 when inactive).</summary>
    public float Value(long i)
    {
        if (!Active)
            return 1f;
        ulong r = ParallelDropout.Mix(Seed, (ulong)i >> 1);
        ulong half = (i & 1) == 0 ? r & 0xFFFFFFFF : r >> 32;
        return half < Threshold ? Kept : 0f;
    }

    /// <summary>The values of elements i .. i + 15 (i even) from 8 draws: a draw's 32-bit halves, read as two uint
    /// lanes, are its low and high halves in element order (little-endian), as <see cref="Value"/> defines.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<float> Values16(long i)
    {
        var r = ParallelDropout.Mix(
            Vector512.Create(Seed),
            Vector512.Create((ulong)i >> 1) + Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7)
        );
        var kept16 = Vector512.LessThan(r.AsUInt32(), Vector512.Create((uint)Threshold)).AsSingle();
        return Vector512.ConditionalSelect(kept16, Vector512.Create(Kept), Vector512<float>.Zero);
    }
}
