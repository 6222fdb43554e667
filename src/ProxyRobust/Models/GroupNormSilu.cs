using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>
/// GroupNorm (Wu &amp; He 2018) over <c>groups</c> channel groups with a per-channel scale and shift, optionally
/// followed by SiLU, as the diffusion UNet uses it. Its parameters are named as GroupNorm's ("weight", "bias"), so
/// checkpoints are interchangeable with <see cref="GroupNorm"/>.
/// <para>
/// For channels-last float32 activations (NHWC memory, the layout in which oneDNN runs the UNet's convolutions
/// without reordering) the normalisation and the SiLU are one fused kernel here, forward and backward: libtorch 2.10's
/// channels-last GroupNorm kernels took a quarter of a UNet training step (bench/RESULTS.md). Each image is normalised
/// on its own (an image of 28x28x32 floats is 100 KB, so its passes run from the core's cache): a pass for the
/// per-channel sums, a pass for the centred squares (two passes, as in libtorch, so the variance does not cancel), and
/// a pass that writes SiLU(x * scale + shift). A residual block's time embedding (added before the normalisation) and
/// its dropout (after the SiLU) go into the same passes (<see cref="Apply"/>): ~2.4% of a UNet training step, by nine
/// alternated pairs (bench/RESULTS.md). Other layouts and types use libtorch's group_norm and silu.
/// </para>
/// </summary>
public sealed class GroupNormSilu : nn.Module<Tensor, Tensor>
{
    public Parameter weight;
    public Parameter bias;
    private readonly int groups;
    private readonly double eps;
    private readonly bool silu;

    public GroupNormSilu(int groups, int channels, bool silu, double eps = 1e-5)
        : base(nameof(GroupNormSilu))
    {
        if (groups < 1 || channels % groups != 0)
            throw new ArgumentException($"{channels} channels cannot form {groups} groups");
        this.groups = groups;
        this.eps = eps;
        this.silu = silu;
        weight = new Parameter(ones(channels));
        bias = new Parameter(zeros(channels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (!IsChannelsLastFloat(x))
        {
            using var normed = nn.functional.group_norm(x, groups, weight, bias, eps);
            return silu ? nn.functional.silu(normed) : normed.alias();
        }
        return Fused(x, null, default);
    }

    /// <summary>
    /// dropout(this(x + shift)), <paramref name="shift"/> [N, C] added to every pixel of each image's channels: a
    /// residual block's time embedding. For channels-last float32 input all three are one kernel, forward and backward,
    /// with the same result as the three modules (the mask drawn as <see cref="ParallelDropout"/> draws it, in the same
    /// memory order): the sum and the mask never go through memory.
    /// </summary>
    public Tensor Apply(Tensor x, Tensor shift, ParallelDropout dropout)
    {
        if (!IsChannelsLastFloat(x) || shift.dtype != ScalarType.Float32 || shift.device.type != DeviceType.CPU)
            return dropout.call(call(x + shift.unsqueeze(-1).unsqueeze(-1)));
        return Fused(x, shift, dropout.DrawMask());
    }

    private Tensor Fused(Tensor x, Tensor? shift, DropoutMask mask)
    {
        bool needsGradient =
            is_grad_enabled()
            && (x.requires_grad || weight.requires_grad || bias.requires_grad || shift?.requires_grad == true);
        if (!needsGradient)
            return Kernels.Forward(x, weight, bias, shift, groups, eps, silu, mask, out _);
        using var noShift = shift is null ? zeros(0) : null; // autograd functions take tensors, not nulls
        return Function.apply(x, weight, bias, shift ?? noShift!, groups, eps, silu, mask);
    }

    /// <summary>True for a float32 CPU tensor in channels-last memory: what the fused kernels take.</summary>
    internal static bool IsChannelsLastFloat(Tensor x) =>
        x.dtype == ScalarType.Float32 && x.device.type == DeviceType.CPU && Classifier.IsChannelsLast(x);

    private sealed class Function : autograd.SingleTensorFunction<Function>
    {
        public override string Name => nameof(GroupNormSilu);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, weight, bias, shift) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
            var (groups, eps, silu, mask) = ((int)vars[4], (double)vars[5], (bool)vars[6], (DropoutMask)vars[7]);
            var shiftOrNull = shift.numel() == 0 ? null : shift;
            var y = Kernels.Forward(x, weight, bias, shiftOrNull, groups, eps, silu, mask, out var statistics);
            ctx.save_for_backward([x, weight, bias, shift]);
            ctx.save_data("statistics", statistics);
            ctx.save_data("groups", groups);
            ctx.save_data("silu", silu);
            ctx.save_data("mask", mask);
            return y;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var saved = ctx.get_saved_variables();
            var shift = saved[3].numel() == 0 ? null : saved[3];
            var (dx, dWeight, dBias, dShift) = Kernels.Backward(
                gradOutput,
                saved[0],
                saved[1],
                saved[2],
                shift,
                (float[])ctx.get_data("statistics"),
                (int)ctx.get_data("groups"),
                (bool)ctx.get_data("silu"),
                (DropoutMask)ctx.get_data("mask")
            );
            return [dx, dWeight, dBias, dShift!, null!, null!, null!, null!]; // no gradient without a shift
        }
    }

    /// <summary>The fused kernels on NHWC memory: element (pixel p, channel c) of image n at n*P*C + p*C + c.</summary>
    internal static unsafe class Kernels
    {
        /// <summary>y = mask act(gamma (x' - mean_g) rstd_g + beta), x' = x + shift (shift per image and channel, or
        /// none), with mean_g and rstd_g = 1/sqrt(var_g + eps) over the pixels and channels of group g of each image's
        /// x' (biased variance, as GroupNorm) and mask the dropout mask's value of each element in NHWC order.
        /// Returns the output with channels-last strides; <paramref name="statistics"/> holds mean and rstd per
        /// (image, group).</summary>
        public static Tensor Forward(
            Tensor x,
            Tensor weight,
            Tensor bias,
            Tensor? shift,
            int groups,
            double eps,
            bool silu,
            DropoutMask mask,
            out float[] statistics
        )
        {
            long n = x.shape[0],
                channels = x.shape[1],
                pixels = x.shape[2] * x.shape[3];
            using var parameters = new ChannelParameters(weight, bias, shift);
            var output = empty([n, x.shape[2], x.shape[3], channels], ScalarType.Float32);
            var stats = new float[n * groups * 2];
            using var xNhwc = x.permute(0, 2, 3, 1); // the same memory, now contiguous
            var (xAt, yAt) = (TensorCollectives.Address(xNhwc), TensorCollectives.Address(output));
            int c = (int)channels;
            CpuParallel.For(
                n,
                i =>
                {
                    float* xs = (float*)xAt,
                        ys = (float*)yAt,
                        gs = (float*)parameters.Gamma,
                        bs = (float*)parameters.Beta;
                    float* xi = xs + i * pixels * c,
                        yi = ys + i * pixels * c;
                    float* perChannel = stackalloc float[5 * c]; // sums, means, scales, shifts, this image's x shift
                    float* sum = perChannel,
                        mean = perChannel + c,
                        a = perChannel + 2 * c,
                        b = perChannel + 3 * c,
                        s = perChannel + 4 * c;
                    parameters.ImageShift(i, c, s);
                    ChannelSums(xi, pixels, c, sum);
                    for (int ch = 0; ch < c; ch++)
                        sum[ch] += pixels * s[ch];
                    GroupAverage(sum, c, groups, pixels, mean);
                    for (int ch = 0; ch < c; ch++)
                    {
                        long g = i * groups + ch / (c / groups);
                        stats[2 * g] = mean[ch]; // the group's mean of x'
                        mean[ch] -= s[ch]; // x' - mean = x - (mean - s): the kernels read x as it is
                    }
                    ChannelSquares(xi, pixels, c, mean, sum);
                    GroupAverage(sum, c, groups, pixels, a); // a = var per channel's group
                    for (int ch = 0; ch < c; ch++)
                    {
                        float rstd = (float)(1 / Math.Sqrt(a[ch] + eps));
                        a[ch] = gs[ch] * rstd;
                        b[ch] = bs[ch] - mean[ch] * a[ch];
                        stats[2 * (i * groups + ch / (c / groups)) + 1] = rstd;
                    }
                    ScaleShift(xi, yi, pixels, c, a, b, silu, mask, i * pixels * c);
                }
            );
            statistics = stats;
            return output.permute(0, 3, 1, 2);
        }

        /// <summary>The gradients of <see cref="Forward"/>. With xhat = (x' - mean) rstd and dz the gradient
        /// reaching the normalised output z = gamma xhat + beta (dz = dy mask s (1 + z (1 - s)), s = sigmoid(z), after
        /// SiLU): dx = rstd (gamma dz - mean_g(gamma dz) - xhat mean_g(gamma dz xhat)), dgamma = sum(dz xhat),
        /// dbeta = sum(dz), the means over each image's group and the sums over images and pixels; dshift = dx summed
        /// over each image's pixels (null without a shift).</summary>
        public static (Tensor Input, Tensor Weight, Tensor Bias, Tensor? Shift) Backward(
            Tensor gradOutput,
            Tensor x,
            Tensor weight,
            Tensor bias,
            Tensor? shift,
            float[] statistics,
            int groups,
            bool silu,
            DropoutMask mask
        )
        {
            long n = x.shape[0],
                channels = x.shape[1],
                pixels = x.shape[2] * x.shape[3];
            int c = (int)channels,
                perGroup = c / groups;
            using var dyNhwc = gradOutput.permute(0, 2, 3, 1).contiguous();
            using var parameters = new ChannelParameters(weight, bias, shift);
            var dx = empty([n, x.shape[2], x.shape[3], channels], ScalarType.Float32);
            var dShift = shift is null ? null : empty([n, channels], ScalarType.Float32);
            var partials = new float[n * c * 2]; // per image: sum(dz xhat), then sum(dz), per channel
            using var xNhwc = x.permute(0, 2, 3, 1);
            var (xAt, dyAt, dxAt) = (
                TensorCollectives.Address(xNhwc),
                TensorCollectives.Address(dyNhwc),
                TensorCollectives.Address(dx)
            );
            var dShiftAt = dShift is null ? IntPtr.Zero : TensorCollectives.Address(dShift);
            CpuParallel.For(
                n,
                i =>
                {
                    float* xs = (float*)xAt,
                        dys = (float*)dyAt,
                        dxs = (float*)dxAt,
                        gs = (float*)parameters.Gamma,
                        bs = (float*)parameters.Beta;
                    long offset = i * pixels * c;
                    float* perChannel = stackalloc float[5 * c]; // means, rstds, sums of dz xhat and of dz, shift
                    float* mean = perChannel,
                        rstd = perChannel + c,
                        sdzx = perChannel + 2 * c,
                        sdz = perChannel + 3 * c,
                        s = perChannel + 4 * c;
                    parameters.ImageShift(i, c, s);
                    for (int ch = 0; ch < c; ch++)
                    {
                        long g = i * groups + ch / perGroup;
                        mean[ch] = statistics[2 * g] - s[ch]; // as in the forward pass: x' - mean = x - (mean - s)
                        rstd[ch] = statistics[2 * g + 1];
                    }
                    // Pass 1: dz (kept in dx's memory) and its per-channel sums.
                    GradientOfNormalised(
                        xs + offset,
                        dys + offset,
                        dxs + offset,
                        pixels,
                        c,
                        mean,
                        rstd,
                        gs,
                        bs,
                        silu,
                        mask,
                        offset,
                        sdzx,
                        sdz
                    );
                    for (int ch = 0; ch < c; ch++)
                    {
                        partials[(i * c + ch) * 2] = sdzx[ch];
                        partials[(i * c + ch) * 2 + 1] = sdz[ch];
                    }
                    // Group means of gamma dz (into sdz) and of gamma dz xhat (into sdzx), over P * perGroup.
                    for (int ch = 0; ch < c; ch++)
                    {
                        sdz[ch] *= gs[ch];
                        sdzx[ch] *= gs[ch];
                    }
                    GroupAverage(sdz, c, groups, pixels, sdz);
                    GroupAverage(sdzx, c, groups, pixels, sdzx);
                    // Pass 2: dx = rstd (gamma dz - mean(gamma dz) - xhat mean(gamma dz xhat)), in place, and its
                    // sums over the pixels (into s, which is no longer needed) for the shift's gradient.
                    InputGradient(xs + offset, dxs + offset, pixels, c, mean, rstd, gs, sdz, sdzx, s);
                    if (dShiftAt != IntPtr.Zero)
                        new Span<float>(s, c).CopyTo(new Span<float>((float*)dShiftAt + i * c, c));
                }
            );
            var dWeight = new float[c];
            var dBias = new float[c];
            for (int ch = 0; ch < c; ch++)
            {
                double a = 0,
                    b = 0;
                for (long i = 0; i < n; i++)
                {
                    a += partials[(i * c + ch) * 2];
                    b += partials[(i * c + ch) * 2 + 1];
                }
                (dWeight[ch], dBias[ch]) = ((float)a, (float)b);
            }
            return (dx.permute(0, 3, 1, 2), tensor(dWeight), tensor(dBias), dShift);
        }

        /// <summary>The per-channel inputs of both passes as contiguous float32 memory: gamma, beta and the optional
        /// shift [N, C].</summary>
        private sealed class ChannelParameters : IDisposable
        {
            private readonly Tensor gamma,
                beta;
            private readonly Tensor? shift;
            public readonly IntPtr Gamma,
                Beta;
            private readonly IntPtr shiftAt; // zero without a shift

            public ChannelParameters(Tensor weight, Tensor bias, Tensor? shift)
            {
                gamma = weight.detach().contiguous();
                beta = bias.detach().contiguous();
                this.shift = shift?.detach().contiguous();
                (Gamma, Beta) = (TensorCollectives.Address(gamma), TensorCollectives.Address(beta));
                shiftAt = this.shift is null ? IntPtr.Zero : TensorCollectives.Address(this.shift);
            }

            /// <summary>Image <paramref name="i"/>'s shift per channel into <paramref name="s"/> (0 without
            /// one).</summary>
            public void ImageShift(long i, int c, float* s)
            {
                if (shiftAt == IntPtr.Zero)
                    new Span<float>(s, c).Clear();
                else
                    new Span<float>((float*)shiftAt + i * c, c).CopyTo(new Span<float>(s, c));
            }

            public void Dispose()
            {
                gamma.Dispose();
                beta.Dispose();
                shift?.Dispose();
            }
        }

        /// <summary>exp(x) in float32 to about 2 ulp (Cephes' expf): x = n ln 2 + r with |r| &lt;= ln 2 / 2, exp(r) by
        /// its degree-7 polynomial, times 2^n built in the exponent bits. Inputs are clamped to [-87.3, 88.3], where
        /// float32's exp and 2^n are normal; NaN stays NaN. .NET's Vector512.Exp, a call the JIT did not inline, was
        /// 1.6% of a UNet training step's samples in perf.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static Vector512<float> Exp(Vector512<float> x)
        {
            var clamped = Vector512.Min(Vector512.Max(x, Vector512.Create(-87.3f)), Vector512.Create(88.3f));
            clamped = Vector512.ConditionalSelect(Vector512.Equals(x, x), clamped, x); // NaN: keep it
            var n = Vector512.Round(clamped * Vector512.Create(1.44269504088896341f));
            var r = clamped - n * Vector512.Create(0.693359375f) + n * Vector512.Create(2.12194440e-4f);
            var p = Vector512.Create(1.9875691500e-4f);
            p = p * r + Vector512.Create(1.3981999507e-3f);
            p = p * r + Vector512.Create(8.3334519073e-3f);
            p = p * r + Vector512.Create(4.1665795894e-2f);
            p = p * r + Vector512.Create(1.6666665459e-1f);
            p = p * r + Vector512.Create(5.0000001201e-1f);
            p = p * (r * r) + r + Vector512<float>.One;
            var twoToN = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
            return p * twoToN;
        }

        /// <summary>sum[c] = sum over pixels of x[p, c].</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: no slow first tier
        private static void ChannelSums(float* x, long pixels, int c, float* sum)
        {
            new Span<float>(sum, c).Clear();
            for (long p = 0; p < pixels; p++)
            {
                float* row = x + p * c;
                int ch = 0;
                for (; ch + 16 <= c; ch += 16)
                    Vector512.Store(Vector512.Load(sum + ch) + Vector512.Load(row + ch), sum + ch);
                for (; ch < c; ch++)
                    sum[ch] += row[ch];
            }
        }

        /// <summary>sum[c] = sum over pixels of (x[p, c] - mean[c])^2.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: no slow first tier
        private static void ChannelSquares(float* x, long pixels, int c, float* mean, float* sum)
        {
            new Span<float>(sum, c).Clear();
            for (long p = 0; p < pixels; p++)
            {
                float* row = x + p * c;
                int ch = 0;
                for (; ch + 16 <= c; ch += 16)
                {
                    var d = Vector512.Load(row + ch) - Vector512.Load(mean + ch);
                    Vector512.Store(Vector512.Load(sum + ch) + d * d, sum + ch);
                }
                for (; ch < c; ch++)
                {
                    float d = row[ch] - mean[ch];
                    sum[ch] += d * d;
                }
            }
        }

        /// <summary>to[c] = the average over the pixels and channels of c's group, from per-channel sums (to may be
        /// sum: each group is read before it is written).</summary>
        private static void GroupAverage(float* sum, int c, int groups, long pixels, float* to)
        {
            int perGroup = c / groups;
            for (int g = 0; g < groups; g++)
            {
                double s = 0;
                for (int ch = g * perGroup; ch < (g + 1) * perGroup; ch++)
                    s += sum[ch];
                for (int ch = g * perGroup; ch < (g + 1) * perGroup; ch++)
                    to[ch] = (float)(s / (pixels * perGroup));
            }
        }

        /// <summary>y = mask (z or SiLU(z) = z / (1 + exp(-z))), z = x a + b per channel, the mask's element index
        /// counted from <paramref name="first"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: no slow first tier
        private static void ScaleShift(
            float* x,
            float* y,
            long pixels,
            int c,
            float* a,
            float* b,
            bool silu,
            DropoutMask mask,
            long first
        )
        {
            for (long p = 0; p < pixels; p++)
            {
                float* xr = x + p * c,
                    yr = y + p * c;
                int ch = 0;
                if (mask.VectorsFrom(first + p * c))
                {
                    for (; ch + 16 <= c; ch += 16)
                    {
                        var z = Vector512.FusedMultiplyAdd(
                            Vector512.Load(xr + ch),
                            Vector512.Load(a + ch),
                            Vector512.Load(b + ch)
                        );
                        var v = silu ? z / (Vector512<float>.One + Exp(-z)) : z;
                        Vector512.Store(mask.Active ? v * mask.Values16(first + p * c + ch) : v, yr + ch);
                    }
                }
                for (; ch < c; ch++)
                {
                    float z = MathF.FusedMultiplyAdd(xr[ch], a[ch], b[ch]);
                    float v = silu ? z / (1 + MathF.Exp(-z)) : z;
                    yr[ch] = mask.Active ? v * mask.Value(first + p * c + ch) : v;
                }
            }
        }

        /// <summary>dz for every element into <paramref name="dz"/>, and per channel sdzx = sum(dz xhat),
        /// sdz = sum(dz).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: no slow first tier
        private static void GradientOfNormalised(
            float* x,
            float* dy,
            float* dz,
            long pixels,
            int c,
            float* mean,
            float* rstd,
            float* gamma,
            float* beta,
            bool silu,
            DropoutMask mask,
            long first,
            float* sdzx,
            float* sdz
        )
        {
            new Span<float>(sdzx, c).Clear();
            new Span<float>(sdz, c).Clear();
            var one = Vector512<float>.One;
            for (long p = 0; p < pixels; p++)
            {
                long row = p * c;
                int ch = 0;
                bool vectorMask = mask.VectorsFrom(first + row);
                for (; vectorMask && ch + 16 <= c; ch += 16)
                {
                    var xhat = (Vector512.Load(x + row + ch) - Vector512.Load(mean + ch)) * Vector512.Load(rstd + ch);
                    var g = Vector512.Load(dy + row + ch);
                    if (mask.Active)
                        g *= mask.Values16(first + row + ch);
                    if (silu)
                    {
                        var z = Vector512.FusedMultiplyAdd(xhat, Vector512.Load(gamma + ch), Vector512.Load(beta + ch));
                        var s = one / (one + Exp(-z));
                        g *= s * (one + z * (one - s));
                    }
                    Vector512.Store(g, dz + row + ch);
                    Vector512.Store(Vector512.Load(sdz + ch) + g, sdz + ch);
                    Vector512.Store(Vector512.FusedMultiplyAdd(g, xhat, Vector512.Load(sdzx + ch)), sdzx + ch);
                }
                for (; ch < c; ch++)
                {
                    float xhat = (x[row + ch] - mean[ch]) * rstd[ch];
                    float g = dy[row + ch];
                    if (mask.Active)
                        g *= mask.Value(first + row + ch);
                    if (silu)
                    {
                        float z = MathF.FusedMultiplyAdd(xhat, gamma[ch], beta[ch]);
                        float s = 1 / (1 + MathF.Exp(-z));
                        g *= s * (1 + z * (1 - s));
                    }
                    dz[row + ch] = g;
                    sdz[ch] += g;
                    sdzx[ch] += g * xhat;
                }
            }
        }

        /// <summary>dx = rstd (gamma dz - meanDz - xhat meanDzXhat), overwriting dz; <paramref name="sum"/>: dx summed
        /// over the pixels, per channel.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot loops: no slow first tier
        private static void InputGradient(
            float* x,
            float* dz,
            long pixels,
            int c,
            float* mean,
            float* rstd,
            float* gamma,
            float* meanDz,
            float* meanDzXhat,
            float* sum
        )
        {
            new Span<float>(sum, c).Clear();
            for (long p = 0; p < pixels; p++)
            {
                long row = p * c;
                int ch = 0;
                for (; ch + 16 <= c; ch += 16)
                {
                    var r = Vector512.Load(rstd + ch);
                    var xhat = (Vector512.Load(x + row + ch) - Vector512.Load(mean + ch)) * r;
                    var inner =
                        Vector512.Load(gamma + ch) * Vector512.Load(dz + row + ch) - Vector512.Load(meanDz + ch);
                    var d = r * (inner - xhat * Vector512.Load(meanDzXhat + ch));
                    Vector512.Store(d, dz + row + ch);
                    Vector512.Store(Vector512.Load(sum + ch) + d, sum + ch);
                }
                for (; ch < c; ch++)
                {
                    float xhat = (x[row + ch] - mean[ch]) * rstd[ch];
                    dz[row + ch] = rstd[ch] * (gamma[ch] * dz[row + ch] - meanDz[ch] - xhat * meanDzXhat[ch]);
                    sum[ch] += dz[row + ch];
                }
            }
        }
    }
}
