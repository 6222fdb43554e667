using ProxyRobust.Attacks;
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
        reference.load_state_dict(
            model.state_dict().Where(kv => !kv.Key.StartsWith("normalize.")).ToDictionary(),
            strict: false
        );
        using var x = rand(4, 2, 8, 8);
        using var manual =
            (x - tensor(new[] { 0.2f, 0.7f }).reshape(1, 2, 1, 1)) / tensor(new[] { 0.5f, 0.25f }).reshape(1, 2, 1, 1);
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

    [Theory]
    [InlineData("preact-resnet18", 3, 32)]
    [InlineData("wrn-10-2", 3, 16)]
    public void Channels_last_layout_changes_no_number(string arch, int channels, int side)
    {
        // The same weights in an NCHW-only classifier and in a float64 one (the reference). In eval mode (attacks,
        // evaluation, certification) logits, input gradients and weight gradients of the channels-last model must be as
        // close to the float64 values as the NCHW model's are: float32 rounding differs between layouts, a layout
        // mistake would be off by the size of the values themselves. In training mode (BatchNorm on batch statistics,
        // here of 4 images) a ReLU input within rounding of zero can land on the other side of the kink and flip one
        // element's subgradient (seen here and in PyTorch 1.13's own channels_last: 0.6% of the gradients' norm, NCHW
        // 2e-6), so there the gradients are compared as a whole, against a bound far below a layout mistake's 100%.
        torch.manual_seed(3);
        var spec = ArchSpec.For(arch, channels, side, side, 10, [0.4f, 0.5f, 0.6f], [0.2f, 0.25f, 0.3f]);
        using var fast = spec.Create();
        Assert.True(fast.ChannelsLast);
        Classifier Plain() =>
            new(
                spec,
                spec.Wrn() is { } w ? new WideResNet(w.Depth, w.Widen, channels, 10) : new PreActResNet18(channels, 10)
            );
        using var plain = Plain();
        using var reference = Plain();
        plain.load_state_dict(fast.state_dict());
        reference.load_state_dict(fast.state_dict());
        reference.to(ScalarType.Float64);
        var convWeight = fast.named_parameters()
            .First(p => p.name.EndsWith("conv1.weight") && p.parameter.shape[1] > 1)
            .parameter;
        Assert.Equal(1, convWeight.stride(1)); // channels are innermost in memory
        Assert.All(plain.parameters(), p => Assert.True(p.is_contiguous()));

        using var x = rand(4, channels, side, side);
        using var y = tensor(new long[] { 0, 3, 7, 9 });
        foreach (var train in new[] { false, true })
        {
            var want = Run(reference, train);
            var got = Run(fast, train);
            var standard = Run(plain, train);
            foreach (var (name, r) in want.Where(kv => !train || kv.Key == "logits"))
            {
                double scale = r.abs().max().item<float>(),
                    errFast = (got[name] - r).abs().max().item<float>(),
                    errStandard = (standard[name] - r).abs().max().item<float>();
                Assert.True(
                    errFast <= 4 * errStandard + 1e-5 * scale,
                    $"{name}, train={train}: channels-last error {errFast:G3}, NCHW error {errStandard:G3}, values "
                        + $"up to {scale:G3}"
                );
            }
            if (train)
            {
                var weights = want.Keys.Where(k => k.StartsWith("net.")).ToList();
                double diff = Math.Sqrt(weights.Sum(k => (got[k] - want[k]).square().sum().item<float>()));
                double norm = Math.Sqrt(weights.Sum(k => want[k].square().sum().item<float>()));
                Assert.True(
                    diff <= 0.02 * norm,
                    $"training-mode weight gradients differ by {diff / norm:P2} of their norm"
                );
            }
        }

        Dictionary<string, Tensor> Run(Classifier model, bool train)
        {
            model.train(train);
            model.zero_grad();
            var input = x.to(model.parameters().First().dtype).clone().requires_grad_(true);
            var logits = model.forward(input);
            nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).backward();
            var result = model
                .named_parameters()
                .ToDictionary(p => p.name, p => p.parameter.grad!.to(ScalarType.Float32));
            result["logits"] = logits.detach().to(ScalarType.Float32);
            result["input gradient"] = input.grad!.to(ScalarType.Float32);
            return result;
        }
    }

    [Theory]
    [InlineData(1, 28)]
    [InlineData(3, 32)] // the attack path's im2col takes the weights' (channel, row, column) order
    public void Small_cnn_pools_before_its_relu_without_changing_values_or_gradients(int channels, int side)
    {
        // Reference: the textbook order conv -> ReLU -> max-pool, written with functional ops on the model's own
        // weights.
        // Half of each image is constant, so many pooling windows tie (exactly equal activations), where the choice of
        // the arg-max element matters for the gradient.
        torch.manual_seed(4);
        using var model = ArchSpec
            .For(
                "small-cnn",
                channels,
                side,
                side,
                10,
                [.. Enumerable.Repeat(0.3f, channels)],
                [.. Enumerable.Repeat(0.35f, channels)]
            )
            .Create();
        model.eval();
        var p = model.named_parameters().ToDictionary(q => q.name, q => q.parameter);
        using var x = rand(6, channels, side, side);
        x[.., .., ..(side / 2), ..] = tensor(0f);
        using var y = tensor(new long[] { 0, 1, 2, 3, 4, 5 });

        var a = x.clone().requires_grad_(true);
        var logits = model.forward(a);
        nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).backward();

        var b = x.clone().requires_grad_(true);
        var h = (b - 0.3f) / 0.35f;
        h = nn.functional.max_pool2d(
            nn.functional.relu(nn.functional.conv2d(h, p["net.conv1.weight"], p["net.conv1.bias"], padding: [1, 1])),
            2
        );
        h = nn.functional.max_pool2d(
            nn.functional.relu(nn.functional.conv2d(h, p["net.conv2.weight"], p["net.conv2.bias"], padding: [1, 1])),
            2
        );
        h = nn.functional.relu(nn.functional.linear(h.flatten(1), p["net.fc1.weight"], p["net.fc1.bias"]));
        var reference = nn.functional.linear(h, p["net.fc2.weight"], p["net.fc2.bias"]);
        nn.functional.cross_entropy(reference, y, reduction: nn.Reduction.Sum).backward();

        Assert.True(logits.allclose(reference, rtol: 1e-5, atol: 1e-5));
        Assert.True(a.grad!.allclose(b.grad!, rtol: 1e-4, atol: 1e-7));
        Assert.True(a.grad!.abs().sum().item<float>() > 0);

        // Attacks freeze the weights, which switches the first layer's backward to a matmul + fold (col2im) instead of
        // libtorch's convolution backward: the input gradient must be the textbook one as well.
        using (new AttackMode(model))
        {
            var c = x.clone().requires_grad_(true);
            var loss = nn.functional.cross_entropy(model.forward(c), y, reduction: nn.Reduction.Sum);
            var g = torch.autograd.grad([loss], [c])[0];
            Assert.True(g.allclose(b.grad!, rtol: 1e-4, atol: 1e-7));
            // Without autograd (Square's queries) conv1 is an im2col matmul and the poolings are strided maxima: the
            // same logits, ties included.
            using (no_grad())
                Assert.True(model.forward(x).allclose(reference, rtol: 1e-5, atol: 1e-5));
        }
    }
}

public sealed class FlopCounterTests
{
    public FlopCounterTests() => TestSupport.InitTorch();

    [Fact]
    public void Small_cnn_macs_match_the_layer_by_layer_closed_form()
    {
        using var model = ArchSpec.For("small-cnn", 1, 28, 28, 10).Create();
        long expected =
            28 * 28 * 32 * (1 * 9) // conv1, 3x3, padding 1
            + 14 * 14 * 64 * (32 * 9) // conv2 after 2x2 pooling
            + 64 * 7 * 7 * 128 // fc1
            + 128 * 10; // fc2
        Assert.Equal(expected, FlopCounter.ForwardMacsPerImage(model));
    }
}
