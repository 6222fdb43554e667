using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ProxyRobust.Native;

/// <summary>One computation checked against float64: the largest error relative to the largest reference
/// value.</summary>
public sealed record NumericsCase(string Name, double RelativeError, double Tolerance)
{
    public bool Passed => RelativeError <= Tolerance; // false for NaN as well
}

/// <summary>What <see cref="NumericsCheck.Run"/> found on this machine.</summary>
public sealed record NumericsReport(OneDnnState OneDnn, IReadOnlyList<NumericsCase> Cases)
{
    public bool Passed => Cases.All(c => c.Passed);
}

/// <summary>
/// Checks that this machine's libtorch computes the layers our models are made of: float32 forward, input gradient and
/// weight gradients, in the memory layouts the models use, against the same computation in float64 (which libtorch
/// runs on its plain, non-oneDNN kernels). The shapes are those that were wrong on a host whose oneDNN sized its
/// kernels for 1-byte caches (OneDnnGuard): a PreAct ResNet-18's first layer in channels-last, and a small UNet block
/// with GroupNorm, SiLU, 1x1 and strided convolutions, whose gradients became NaN; and beside them the other layers
/// (attention's matmuls, BatchNorm, the linear head). Takes well under a second.
/// </summary>
public static class NumericsCheck
{
    // float32 sums of a few hundred products land within ~1e-6 of float64; a kernel that drops or repeats a block is
    // off by whole percents.
    private const double Tolerance = 1e-4;

    /// <summary>A convolution as the models use it: channels in and out, kernel, stride, padding, transposed or not,
    /// on a batch of 4 square images of the given side, in channels-last or NCHW.</summary>
    private sealed record Layer(string Model, int In, int Out, int Kernel, int Stride, int Side, bool ChannelsLast)
    {
        public bool Transposed { get; init; }
        public bool Bias { get; init; } = true;
        public int Padding => Kernel / 2 - (Kernel % 2 == 0 ? 1 : 0);

        public override string ToString() =>
            $"{Model} {(Transposed ? "transposed " : "")}conv {In}->{Out}, {Kernel}x{Kernel}"
            + $"{(Stride > 1 ? $" stride {Stride}" : "")} on {Side}x{Side}, "
            + (ChannelsLast ? "channels-last" : "NCHW")
            + (Bias ? "" : ", no bias");
    }

    private static readonly Layer[] Layers =
    [
        new("PreAct ResNet-18", 3, 64, 3, 1, 32, true) { Bias = false },
        new("PreAct ResNet-18", 64, 64, 3, 1, 32, true) { Bias = false },
        new("PreAct ResNet-18", 64, 128, 3, 2, 32, true) { Bias = false },
        new("PreAct ResNet-18", 64, 128, 1, 2, 32, true) { Bias = false },
        new("PreAct ResNet-18", 128, 128, 3, 1, 16, true) { Bias = false },
        new("PreAct ResNet-18", 128, 256, 3, 2, 16, true) { Bias = false },
        new("PreAct ResNet-18", 128, 256, 1, 2, 16, true) { Bias = false },
        new("PreAct ResNet-18", 256, 512, 3, 2, 8, true) { Bias = false },
        new("PreAct ResNet-18", 256, 512, 1, 2, 8, true) { Bias = false },
        new("PreAct ResNet-18", 512, 512, 3, 1, 4, true) { Bias = false },
        new("small CNN", 1, 32, 3, 1, 28, false),
        new("small CNN", 32, 64, 3, 1, 14, false),
        new("UNet", 1, 8, 3, 1, 28, false),
        new("UNet", 8, 16, 1, 1, 28, true),
        new("UNet", 16, 16, 3, 2, 28, true),
        new("UNet", 32, 32, 3, 1, 14, true),
        new("GAN", 1, 16, 3, 1, 28, false),
        new("GAN", 16, 16, 4, 2, 28, false),
        new("GAN", 32, 16, 4, 2, 7, false) { Transposed = true },
    ];

    public static NumericsReport Run()
    {
        TorchRuntime.EnsureInitialised();
        return new(TorchRuntime.OneDnn, Cases());
    }

    /// <summary>The checks, without starting libtorch first (<see cref="OneDnnCacheRepair"/> runs them while
    /// libtorch starts).</summary>
    internal static List<NumericsCase> Cases()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var cases = new List<NumericsCase>();
        foreach (var layer in Layers)
        {
            long[] weight = layer.Transposed
                ? [layer.In, layer.Out, layer.Kernel, layer.Kernel]
                : [layer.Out, layer.In, layer.Kernel, layer.Kernel];
            cases.AddRange(
                Check(
                    layer.ToString(),
                    [4, layer.In, layer.Side, layer.Side],
                    layer.Bias ? [weight, [layer.Out]] : [weight],
                    layer.ChannelsLast,
                    Conv
                )
            );

            Tensor Conv(Tensor x, Tensor[] w) =>
                layer.Transposed
                    ? F.conv_transpose2d(
                        x,
                        w[0],
                        w.Length > 1 ? w[1] : null,
                        strides: [layer.Stride, layer.Stride],
                        padding: [layer.Padding, layer.Padding]
                    )
                    : F.conv2d(
                        x,
                        w[0],
                        w.Length > 1 ? w[1] : null,
                        strides: [layer.Stride, layer.Stride],
                        padding: [layer.Padding, layer.Padding]
                    );
        }
        long[][] unet =
        [
            [16, 8, 3, 3],
            [16],
            [16, 16, 3, 3],
            [16],
            [16, 8, 1, 1],
            [16],
            [16, 16, 3, 3],
            [16],
        ];
        cases.AddRange(Check("UNet block 8->16, GroupNorm, SiLU, 1x1, stride 2", [4, 8, 16, 16], unet, true, Block));
        cases.AddRange(
            Check(
                "UNet middle attention, 32 channels on 7x7 (GroupNorm, 1x1 qkv, batched matmuls, softmax)",
                [4, 32, 7, 7],
                [
                    [96, 32, 1, 1],
                    [96],
                    [32, 32, 1, 1],
                    [32],
                ],
                false,
                Attention
            )
        );
        cases.AddRange(
            Check(
                "PreAct ResNet-18 BatchNorm (batch statistics) and ReLU, 64 channels on 32x32, channels-last",
                [4, 64, 32, 32],
                [
                    [64],
                    [64],
                ],
                true,
                (x, w) => F.relu(F.batch_norm(x, null, null, w[0], w[1], training: true))
            )
        );
        cases.AddRange(
            Check(
                "PreAct ResNet-18 head: linear 512->10",
                [4, 512],
                [
                    [10, 512],
                    [10],
                ],
                false,
                (x, w) => F.linear(x, w[0], w[1])
            )
        );
        return cases;

        static Tensor Block(Tensor x, Tensor[] w)
        {
            var h = F.conv2d(F.silu(F.group_norm(x, 4)), w[0], w[1], padding: [1, 1]);
            h = F.conv2d(F.silu(F.group_norm(h, 4)), w[2], w[3], padding: [1, 1]);
            h += F.conv2d(x, w[4], w[5]);
            return F.conv2d(h, w[6], w[7], strides: [2, 2], padding: [1, 1]);
        }

        // Models/UNet.cs's Attention written out with its weights given: Native sits below Models (ArchitectureTests).
        static Tensor Attention(Tensor x, Tensor[] w)
        {
            long n = x.shape[0],
                c = x.shape[1],
                hw = x.shape[2] * x.shape[3];
            var parts = F.conv2d(F.group_norm(x, 8), w[0], w[1]).view(n, 3, c, hw).unbind(1);
            var weights = F.softmax(parts[0].transpose(1, 2).bmm(parts[1]) / Math.Sqrt(c), -1);
            return x + F.conv2d(parts[2].bmm(weights.transpose(1, 2)).view(x.shape), w[2], w[3]);
        }
    }

    /// <summary>Forward, input gradient and each weight's gradient of <paramref name="layer"/> (loss: the sum of
    /// the output times fixed random weights), float32 in the given layout against float64 in NCHW.</summary>
    private static IEnumerable<NumericsCase> Check(
        string name,
        long[] inputShape,
        long[][] weightShapes,
        bool channelsLast,
        Func<Tensor, Tensor[], Tensor> layer
    )
    {
        using var generator = new Generator(20261205);
        var x = rand(inputShape, ScalarType.Float64, generator: generator);
        var weights = weightShapes.Select(s => randn(s, ScalarType.Float64, generator: generator) * 0.2).ToArray();
        var want = Run(x, weights, ScalarType.Float64, false);
        var got = Run(x, weights, ScalarType.Float32, channelsLast);
        string[] parts =
        [
            "forward",
            "input gradient",
            .. weights.Select((w, i) => $"parameter {i} ({string.Join('x', w.shape)}) gradient"),
        ];
        for (int i = 0; i < parts.Length; i++)
        {
            var reference = want[i];
            double scale = reference.abs().max().item<double>();
            double error = (got[i].to(ScalarType.Float64) - reference).abs().max().item<double>();
            yield return new($"{name}: {parts[i]}", scale > 0 ? error / scale : error, Tolerance);
        }

        Tensor[] Run(Tensor input, Tensor[] parameters, ScalarType type, bool nhwc)
        {
            using var enable = enable_grad();
            // Channels-last strides as the models make them (Classifier.ToChannelsLast: TorchSharp has no memory
            // formats).
            Tensor Layout(Tensor t)
            {
                var copy = t.detach().to(type, copy: true);
                return nhwc && t.dim() == 4 ? copy.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) : copy;
            }
            var xs = Layout(input).requires_grad_(true);
            var ws = parameters.Select(w => Layout(w).requires_grad_(true)).ToArray();
            var y = layer(xs, ws);
            using var g = new Generator(7);
            var direction = randn(y.shape, ScalarType.Float64, generator: g).to(type);
            (y * direction).sum().backward();
            return [y.detach(), xs.grad!, .. ws.Select(w => w.grad!)];
        }
    }
}
