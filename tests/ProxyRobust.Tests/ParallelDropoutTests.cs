using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

/// <summary>The UNet's dropout, whose mask is drawn on all cores (Models/ParallelDropout.cs): its generator against
/// SplitMix64's published outputs, its mask against a serial evaluation of its definition, its drop rate and mean
/// against the binomial, its gradient, and its seeding through torch's global generator.</summary>
public sealed class ParallelDropoutTests
{
    public ParallelDropoutTests() => TestSupport.InitTorch();

    [Fact]
    public void The_generator_is_splitmix64()
    {
        // The first three outputs of SplitMix64 from state 0, as in Vigna's reference splitmix64.c.
        Assert.Equal(0xE220A8397B1DCDAFUL, ParallelDropout.Mix(0, 0));
        Assert.Equal(0x6E789E6AA1B965F4UL, ParallelDropout.Mix(0, 1));
        Assert.Equal(0x06C45D188009454FUL, ParallelDropout.Mix(0, 2));
    }

    [Fact]
    public void The_mask_is_its_definition_evaluated_serially_whatever_the_split()
    {
        // An odd count over several parallel blocks of 2^16: the last element uses the low half of its word only.
        const double p = 0.3;
        const ulong seed = 12345;
        long[] shape = [3, 5, 7, 1249]; // 131,145 elements
        using var mask = ParallelDropout.Mask(shape, p, seed);
        var got = mask.data<float>().ToArray();
        ulong threshold = (ulong)Math.Round(0.7 * 4294967296.0);
        float kept = (float)(4294967296.0 / threshold);
        for (long i = 0; i < got.Length; i++)
        {
            ulong r = ParallelDropout.Mix(seed, (ulong)i / 2);
            ulong bits = i % 2 == 0 ? r & 0xFFFFFFFF : r >> 32;
            Assert.Equal(bits < threshold ? kept : 0f, got[i]);
        }
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    public void It_drops_a_fraction_p_and_keeps_the_mean(double p)
    {
        // 4 million Bernoulli(p) drops: the count is within 5 binomial standard deviations of n p, and kept values
        // are scaled so that the mask's mean is 1 within the same relative bound.
        using var mask = ParallelDropout.Mask([64, 64, 32, 32], p, 7);
        long n = mask.numel();
        double dropped = (mask == 0).sum().item<long>();
        double sd = Math.Sqrt(n * p * (1 - p));
        Assert.InRange(dropped, n * p - 5 * sd, n * p + 5 * sd);
        double mean = mask.to(ScalarType.Float64).mean().item<double>();
        Assert.InRange(mean, 1 - 5 * sd / (n * (1 - p)), 1 + 5 * sd / (n * (1 - p)));
        Assert.Equal(1 / (1 - p), mask.max().item<float>(), 1e-6);
    }

    [Fact]
    public void Training_mode_masks_and_scales_eval_mode_is_the_identity_and_the_gradient_is_the_mask()
    {
        using var dropout = new ParallelDropout(0.25);
        using var x = (rand(8, 4, 9, 9) + 0.5f).requires_grad_(true); // no zeros
        dropout.train();
        using var y = dropout.call(x);
        y.sum().backward();
        using var ratio = y.detach() / x.detach();
        // Every output is the input dropped (0) or scaled by the one factor, and d sum(y) / dx is that same ratio.
        float kept = (float)(4294967296.0 / Math.Round(0.75 * 4294967296.0));
        Assert.True(((ratio == 0) | (ratio - kept).abs() < 1e-5f).all().item<bool>());
        Assert.True((x.grad! - ratio).abs().max().item<float>() < 1e-5f);
        dropout.eval();
        using var same = dropout.call(x);
        Assert.True((same == x).all().item<bool>());
    }

    [Fact]
    public void Torch_manual_seed_fixes_the_mask()
    {
        using var dropout = new ParallelDropout(0.5);
        dropout.train();
        using var x = ones(1000);
        manual_seed(3);
        using var a = dropout.call(x);
        manual_seed(3);
        using var b = dropout.call(x);
        using var c = dropout.call(x);
        Assert.True((a == b).all().item<bool>());
        Assert.False((a == c).all().item<bool>()); // 2^-1000 chance of a false alarm
    }
}
