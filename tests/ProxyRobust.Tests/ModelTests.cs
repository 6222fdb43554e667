using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class ModelTests
{
    public ModelTests() => TestSupport.InitTorch();

    [Theory]
    [InlineData("small-cnn", 1, 28, 10)]
    [InlineData("preact-resnet18", 3, 32, 10)]
    [InlineData("preact-resnet18", 1, 28, 7)]
    [InlineData("wrn-16-4", 3, 32, 100)]
    [InlineData("wrn-10-1", 1, 28, 10)]
    public void Architectures_produce_one_logit_per_class(string arch, int channels, int side, int classes)
    {
        using var model = ArchSpec.For(arch, channels, side, side, classes).Create();
        model.eval();
        using var x = rand(3, channels, side, side);
        using var y = model.forward(x);
        Assert.Equal(new long[] { 3, classes }, y.shape);
    }

    [Fact]
    public void Wide_resnet_has_the_published_parameter_count()
    {
        // WRN-28-10 has 36.5M parameters (Zagoruyko & Komodakis 2016, Table 1; 36,479,194 for CIFAR-10).
        using var model = ArchSpec.For("wrn-28-10", 3, 32, 32, 10).Create();
        long n = model.parameters().Sum(p => p.numel());
        Assert.Equal(36_479_194, n);
    }

    [Fact]
    public void Preact_resnet18_has_the_published_parameter_count()
    {
        // PreAct ResNet-18 for CIFAR-10 without a final BatchNorm has 11,171,146 parameters (kuangliu's reference
        // implementation); the robust-training version (Rice et al. 2020, used by the paper's code) adds BatchNorm(512)
        // before pooling: + 2 x 512.
        using var model = ArchSpec.For("preact-resnet18", 3, 32, 32, 10).Create();
        Assert.Equal(11_171_146 + 2 * 512, model.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void Normalisation_is_inside_the_model()
    {
        torch.manual_seed(1);
        var spec = ArchSpec.For("small-cnn", 2, 8, 8, 3, mean: [0.2f, 0.7f], std: [0.5f, 0.25f]);
        using var model = spec.Create();
        var plain = spec with { Mean = [0f, 0f], Std = [1f, 1f] };
        using var reference = plain.Create();
        reference.load_state_dict(model.state_dict().Where(kv => !kv.Key.StartsWith("normalize.")).ToDictionary(), strict: false);
        using var x = rand(4, 2, 8, 8);
        using var manual = (x - tensor(new[] { 0.2f, 0.7f }).reshape(1, 2, 1, 1)) / tensor(new[] { 0.5f, 0.25f }).reshape(1, 2, 1, 1);
        Assert.True(model.forward(x).allclose(reference.forward(manual), rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void State_dict_names_follow_the_reference_implementations()
    {
        using var wrn = ArchSpec.For("wrn-16-4", 3, 32, 32, 10).Create();
        using var preact = ArchSpec.For("preact-resnet18", 3, 32, 32, 10).Create();
        var w = wrn.state_dict().Keys.ToHashSet();
        var p = preact.state_dict().Keys.ToHashSet();
        Assert.Contains("net.block1.0.convShortcut.weight", w);
        Assert.Contains("net.block2.0.bn1.running_mean", w);
        Assert.Contains("net.fc.weight", w);
        Assert.Contains("net.layer2.0.shortcut.weight", p);
        Assert.DoesNotContain("net.layer1.0.shortcut.weight", p); // same shape: identity shortcut
        Assert.Contains("normalize.mean", p);
    }

    [Fact]
    public void Unknown_architecture_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => ArchSpec.For("resnet-9000", 1, 28, 28, 10));
        Assert.Throws<ArgumentException>(() => ArchSpec.For("wrn-15-2", 1, 28, 28, 10));
    }
}

public sealed class FlopCounterTests
{
    public FlopCounterTests() => TestSupport.InitTorch();

    [Fact]
    public void Small_cnn_macs_match_the_layer_by_layer_closed_form()
    {
        using var model = ArchSpec.For("small-cnn", 1, 28, 28, 10).Create();
        long expected = 28 * 28 * 32 * (1 * 9)      // conv1, 3x3, padding 1
                      + 14 * 14 * 64 * (32 * 9)     // conv2 after 2x2 pooling
                      + 64 * 7 * 7 * 128            // fc1
                      + 128 * 10;                   // fc2
        Assert.Equal(expected, FlopCounter.ForwardMacsPerImage(model));
    }
}
