using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

/// <summary>The UNet's fused GroupNorm + SiLU (Models/GroupNormSilu.cs) against libtorch's group_norm and silu in
/// float64, output and all three gradients, in both layouts; and the UNet itself in both layouts.</summary>
public sealed class GroupNormSiluTests
{
    public GroupNormSiluTests() => TestSupport.InitTorch();

    private static double RelativeError(Tensor got, Tensor expected) =>
        ((got.to(ScalarType.Float64) - expected).abs().max() / expected.abs().max()).item<double>();

    [Theory]
    [InlineData(32, 8, true, true)] // the UNet's widths: 4 channels per group, 16-wide vectors
    [InlineData(64, 16, false, true)] // attention's normalisation: no SiLU
    [InlineData(24, 4, true, true)] // channels not a multiple of 16: the scalar tail
    [InlineData(96, 32, true, false)] // NCHW: libtorch's own kernels behind the same module
    public void Output_and_gradients_match_group_norm_and_silu_in_float64(
        int channels,
        int groups,
        bool silu,
        bool channelsLast
    )
    {
        manual_seed(3);
        using var norm = new GroupNormSilu(groups, channels, silu);
        using (no_grad())
        {
            norm.weight.copy_(randn(channels));
            norm.bias.copy_(randn(channels));
        }
        // Offset and scaled inputs: a two-pass variance is needed where mean^2 dwarfs the variance.
        using var x0 = randn(5, channels, 9, 7) * 3 + 20;
        using var layout = channelsLast ? Classifier.ToChannelsLast(x0) : x0.alias();
        using var x = layout.detach().requires_grad_(true);
        Assert.Equal(channelsLast, GroupNormSilu.IsChannelsLastFloat(x) && !x.is_contiguous());
        using var dy = randn(5, channels, 9, 7);
        using var y = norm.call(x);
        y.backward([dy]);

        using var x64 = x0.to(ScalarType.Float64).requires_grad_(true);
        using var w64 = norm.weight.detach().to(ScalarType.Float64).requires_grad_(true);
        using var b64 = norm.bias.detach().to(ScalarType.Float64).requires_grad_(true);
        using var normed = nn.functional.group_norm(x64, groups, w64, b64, 1e-5);
        using var expected = silu ? nn.functional.silu(normed) : normed.alias();
        expected.backward([dy.to(ScalarType.Float64)]);

        Assert.InRange(RelativeError(y, expected), 0, 2e-6);
        Assert.InRange(RelativeError(x.grad!, x64.grad!), 0, 2e-5);
        Assert.InRange(RelativeError(norm.weight.grad!, w64.grad!), 0, 2e-5);
        Assert.InRange(RelativeError(norm.bias.grad!, b64.grad!), 0, 2e-5);
        // The output keeps the input's layout, so the next convolution gets what it was given.
        Assert.Equal(x.stride(), y.stride());
    }

    [Fact]
    public void Its_exponential_is_within_a_few_ulp_of_float64s()
    {
        // Every 1/64 from -87 to 88 (the range it keeps), and its edges: relative error against Math.Exp.
        var xs = Enumerable.Range(0, 175 * 64).Select(i => -87f + i / 64f).Append(-87.3f).Append(88.3f).ToArray();
        double worst = 0;
        for (int i = 0; i + 16 <= xs.Length; i += 16)
        {
            var got = GroupNormSilu.Kernels.Exp(System.Runtime.Intrinsics.Vector512.Create(xs, i));
            for (int j = 0; j < 16; j++)
                worst = Math.Max(worst, Math.Abs(got[j] / Math.Exp(xs[i + j]) - 1));
        }
        Assert.InRange(worst, 0, 3 * 6e-8); // 3 ulp of float32 (2^-24 = 6e-8 relative)
        var edge = GroupNormSilu.Kernels.Exp(
            System.Runtime.Intrinsics.Vector512.Create(-1000f, 1000f, float.NaN, 0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        );
        Assert.InRange(edge[0], 0, 1e-37f); // clamped: tiny, not negative
        Assert.True(float.IsFinite(edge[1]) && edge[1] > 1e38f); // clamped: huge, not infinite
        Assert.True(float.IsNaN(edge[2]));
        Assert.Equal(1f, edge[3]);
    }

    [Fact]
    public void Without_gradients_it_is_the_same_function_and_nan_propagates()
    {
        manual_seed(4);
        using var norm = new GroupNormSilu(8, 32, silu: true);
        using var x = Classifier.ToChannelsLast(randn(2, 32, 5, 5));
        using var withGraph = norm.call(x.detach().requires_grad_(true));
        using var g = no_grad();
        using var plain = norm.call(x);
        Assert.Equal(0, (withGraph - plain).abs().max().item<float>());
        using var bad = x.clone();
        bad[0, 3, 2, 2] = tensor(float.NaN);
        using var bad2 = Classifier.ToChannelsLast(bad);
        using var outBad = norm.call(bad2);
        // The NaN's group in image 0 (channels 0-3) is NaN everywhere; image 1 is untouched.
        Assert.True(outBad[0].narrow(0, 0, 4).isnan().all().item<bool>());
        Assert.False(outBad[0].narrow(0, 4, 28).isnan().any().item<bool>());
        Assert.False(outBad[1].isnan().any().item<bool>());
    }

    [Fact]
    public void Unet_gives_the_same_output_and_gradients_in_either_layout()
    {
        // With attention at 14 pixels, so its reshapes are covered; dropout 0 so both passes see the same network.
        var spec = new UNetSpec(1, 28, 28, 10, 16, [1, 2], 1, [14], 0.0);
        manual_seed(5);
        using var net = new UNet(spec);
        using (no_grad())
            foreach (var p in net.parameters())
                p.add_(randn_like(p) * 0.05); // the zero-initialised layers would hide most of the network
        using var x = randn(4, 1, 28, 28);
        using var t = tensor(new long[] { 1, 250, 600, 999 });
        using var y = tensor(new long[] { 0, 3, 9, 10 });
        (Tensor Output, Tensor[] Gradients) Run(bool channelsLast)
        {
            net.ChannelsLast = channelsLast;
            net.zero_grad();
            var output = net.call(x, t, y);
            output.square().sum().backward();
            return (output, net.parameters().Select(p => p.grad!.clone()).ToArray());
        }
        var (nchw, nchwGrads) = Run(false);
        var (last, lastGrads) = Run(true);
        Assert.InRange(RelativeError(last, nchw.to(ScalarType.Float64)), 0, 1e-5);
        for (int i = 0; i < nchwGrads.Length; i++)
            Assert.InRange(RelativeError(lastGrads[i], nchwGrads[i].to(ScalarType.Float64)), 0, 1e-4);
    }

    [Theory]
    [InlineData(32, 8, 0.1)] // a residual block's second normalisation, as the UNet trains it
    [InlineData(24, 4, 0.3)] // channels not a multiple of 16: the mask's scalar tail, rows of either parity
    [InlineData(32, 8, 0.0)] // no dropout: the shift alone
    public void The_shift_and_dropout_inside_the_kernel_match_the_three_modules(int channels, int groups, double p)
    {
        // Apply(x, shift, dropout) against dropout(norm(x + shift)), each module tested on its own (above, and
        // ParallelDropoutTests); the same seed gives the same mask, so outputs and all four gradients must agree up
        // to float32 rounding (x + shift is rounded in one and not in the other).
        manual_seed(11);
        using var norm = new GroupNormSilu(groups, channels, silu: true);
        using (no_grad())
        {
            norm.weight.copy_(randn(channels));
            norm.bias.copy_(randn(channels));
        }
        using var dropout = new ParallelDropout(p);
        using var x0 = randn(6, channels, 7, 5) * 2 + 1;
        using var shift0 = randn(6, channels) * 3;
        using var dy = randn(6, channels, 7, 5);
        (Tensor Y, Tensor[] Grads) Run(bool fused)
        {
            norm.zero_grad();
            var x = Classifier.ToChannelsLast(x0).detach().requires_grad_(true);
            var shift = shift0.detach().requires_grad_(true);
            manual_seed(12);
            var y = fused
                ? norm.Apply(x, shift, dropout)
                : dropout.call(norm.call(x + shift.unsqueeze(-1).unsqueeze(-1)));
            y.backward([dy]);
            return (y, [x.grad!, shift.grad!, norm.weight.grad!.clone(), norm.bias.grad!.clone()]);
        }
        var (together, togetherGrads) = Run(fused: true);
        var (apart, apartGrads) = Run(fused: false);
        Assert.InRange(RelativeError(together, apart.to(ScalarType.Float64)), 0, 1e-5);
        for (int i = 0; i < apartGrads.Length; i++)
            Assert.InRange(RelativeError(togetherGrads[i], apartGrads[i].to(ScalarType.Float64)), 0, 1e-4);
        // The mask was applied (a tenth of the elements are zero with p = 0.1), and the output is channels-last.
        double zeros = (together == 0).to(ScalarType.Float64).mean().item<double>();
        Assert.InRange(zeros, p - 0.05, p + 0.05);
        Assert.True(Classifier.IsChannelsLast(together));
        // In evaluation nothing is dropped and no seed is drawn: the same as the normalisation of x + shift.
        dropout.eval();
        using (no_grad())
        {
            using var x = Classifier.ToChannelsLast(x0);
            using var evaluated = norm.Apply(x, shift0, dropout);
            using var expected = norm.call(x + shift0.unsqueeze(-1).unsqueeze(-1));
            Assert.InRange(RelativeError(evaluated, expected.to(ScalarType.Float64)), 0, 1e-5);
        }
    }
}
