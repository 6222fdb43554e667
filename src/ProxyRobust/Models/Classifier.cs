using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ProxyRobust.Models;

/// <summary>
/// A classifier on [0,1] pixels: normalises per channel ((x - mean) / std), then runs the architecture.
/// State-dict names: "normalize.mean", "normalize.std", "net.*" (documented in docs/FORMATS.md).
/// </summary>
public sealed class Classifier : Module<Tensor, Tensor>
{
    private readonly Normalize normalize;
    private readonly Module<Tensor, Tensor> net;

    public ArchSpec Spec { get; }

    /// <summary>
    /// True when activations and convolution weights are kept channels-last (NHWC strides behind the NCHW shape).
    /// oneDNN's convolutions then read and write them directly instead of reordering every input and output
    /// between NCHW and its blocked layout (bench/RESULTS.md: PreAct ResNet-18 attack step -6 to -12%, training step
    /// -11%).
    /// Shapes, state-dict names and saved files are unchanged; only strides differ.
    /// </summary>
    public bool ChannelsLast { get; }

    public Classifier(ArchSpec spec, Module<Tensor, Tensor> body, bool channelsLast = false)
        : base("Classifier")
    {
        Spec = spec;
        normalize = new Normalize(spec.Mean, spec.Std);
        net = body;
        ChannelsLast = channelsLast;
        RegisterComponents();
        if (channelsLast)
            using (no_grad())
                foreach (var conv in net.modules().OfType<Conv2d>())
                    conv.weight = new Parameter(ToChannelsLast(conv.weight!.detach()));
    }

    public override Tensor forward(Tensor x)
    {
        var normalised = normalize.call(x);
        if (!ChannelsLast)
            return net.call(normalised);
        using var channelsLast = ToChannelsLast(normalised);
        normalised.Dispose();
        return net.call(channelsLast);
    }

    /// <summary>
    /// The penultimate activations (the input of the last linear layer): SmallCnn's 128 ReLU units after fc1, the
    /// ResNets' globally pooled features. The feature space of `synthetic report`'s Fréchet distance and
    /// precision/recall.
    /// </summary>
    public Tensor Features(Tensor x)
    {
        if (net is not IHasFeatures body)
            throw new NotSupportedException($"{Spec} does not expose penultimate features");
        using var normalised = normalize.call(x);
        if (!ChannelsLast)
            return body.Features(normalised);
        using var channelsLast = ToChannelsLast(normalised);
        return body.Features(channelsLast);
    }

    /// <summary>The same NCHW tensor with channels-last strides: libtorch's channels_last memory format, built from a
    /// permuted copy because TorchSharp does not expose memory formats.</summary>
    public static Tensor ToChannelsLast(Tensor t)
    {
        using var nhwc = t.permute(0, 2, 3, 1).contiguous();
        return nhwc.permute(0, 3, 1, 2);
    }

    /// <summary>True when a 4-D tensor's memory is what <see cref="ToChannelsLast"/> makes: NHWC, without
    /// gaps.</summary>
    public static bool IsChannelsLast(Tensor t)
    {
        if (t.dim() != 4)
            return false;
        using var nhwc = t.permute(0, 2, 3, 1);
        return nhwc.is_contiguous();
    }
}

/// <summary>An architecture whose logits are a linear map of features it can return on their own.</summary>
public interface IHasFeatures
{
    Tensor Features(Tensor x);
}

public sealed class Normalize : Module<Tensor, Tensor>
{
    private readonly Tensor mean;
    private readonly Tensor std;

    public Normalize(float[] mean, float[] std)
        : base("Normalize")
    {
        this.mean = tensor(mean).reshape(1, mean.Length, 1, 1);
        this.std = tensor(std).reshape(1, std.Length, 1, 1);
        register_buffer("mean", this.mean);
        register_buffer("std", this.std);
    }

    public override Tensor forward(Tensor x) => (x - mean) / std;
}

/// <summary>Two conv layers with max pooling and two linear layers: the fast model for 28x28 gray images.</summary>
public sealed class SmallCnn : Module<Tensor, Tensor>, IHasFeatures
{
    private readonly Conv2d conv1,
        conv2;
    private readonly Linear fc1,
        fc2;

    /// <summary>conv1's padding, which <see cref="FirstLayerForAttacks"/> also uses, forward and
    /// backward.</summary>
    private const int FirstPadding = 1;

    public SmallCnn(int channels, int height, int width, int numClasses)
        : base("SmallCnn")
    {
        conv1 = Conv2d(channels, 32, 3, padding: FirstPadding);
        conv2 = Conv2d(32, 64, 3, padding: 1);
        fc1 = Linear(64 * (height / 4) * (width / 4), 128);
        fc2 = Linear(128, numClasses);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // Max-pooling before the ReLU computes the same function with the same gradients as ReLU-then-pool (both are
        // monotone; the arg-max of a window is the same element), on a quarter of the elements. The first pooling runs
        // on a channels-last copy: libtorch's NCHW max-pool kernel is scalar and took 44% of an attack step, the
        // channels-last one is vectorised (bench/RESULTS.md: attack step 22.5 -> 16.9 ms at batch 128).
        return fc2.call(Features(x)).MoveToOuterDisposeScope();
    }

    public Tensor Features(Tensor x)
    {
        using var scope = NewDisposeScope();
        // Frozen weights (attacks): conv1 as one matmul that writes its output channels-last directly, with its own
        // backward when the input gradient is wanted. Otherwise (training, evaluation, FLOP counting): the module.
        var first =
            conv1.weight!.requires_grad ? Classifier.ToChannelsLast(conv1.call(x))
            : x.requires_grad ? FirstLayerForAttacks.apply(x, conv1.weight!, conv1.bias!)
            : FirstConvChannelsLast(x, conv1.weight!, conv1.bias!);
        var h = PoolThenRelu(first);
        h = PoolThenRelu(conv2.call(h));
        return functional.relu(fc1.call(h.flatten(1))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// relu(max_pool2d(t, 2)). Without autograd and for a channels-last t of even height and width, as two
    /// element-wise maxima of strided views of its [N, H/2, 2, W/2, 2, C] layout and an in-place ReLU: libtorch's
    /// pooling kernel also writes the arg-max indices, which only a backward needs (bench/RESULTS.md).
    /// </summary>
    private static Tensor PoolThenRelu(Tensor t)
    {
        long n = t.shape[0],
            c = t.shape[1],
            height = t.shape[2],
            width = t.shape[3];
        bool channelsLast = t.stride(1) == 1 && t.stride(3) == c && t.stride(2) == c * width;
        if ((t.requires_grad && is_grad_enabled()) || !channelsLast || height % 2 != 0 || width % 2 != 0)
            return functional.relu(functional.max_pool2d(t, 2));
        using var windows = t.permute(0, 2, 3, 1).view(n, height / 2, 2, width / 2, 2, c);
        using var rows = maximum(windows.select(4, 0), windows.select(4, 1)); // [N, H/2, 2, W/2, C]
        var pooled = maximum(rows.select(2, 0), rows.select(2, 1)).relu_(); // [N, H/2, W/2, C]
        return pooled.permute(0, 3, 1, 2);
    }

    /// <summary>
    /// conv1 (3x3, stride 1, padding 1) as im2col and one matmul: the k x k shifted views of the padded input stacked
    /// last give the columns [N*H*W, C*k*k] in the weights' (c, kh, kw) order, and columns x weights^T + bias is the
    /// output already in channels-last order [N, H, W, out], returned with the NCHW shape. For one input channel
    /// this replaces oneDNN's convolution and the copy to channels-last that followed it, the largest single cost of
    /// an attack's forward pass after the convolutions (bench/RESULTS.md).
    /// </summary>
    private static Tensor FirstConvChannelsLast(Tensor x, Tensor weight, Tensor bias)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0],
            c = x.shape[1],
            height = x.shape[2],
            width = x.shape[3],
            outChannels = weight.shape[0],
            kernel = weight.shape[2];
        var padded = functional.pad(x, [FirstPadding, FirstPadding, FirstPadding, FirstPadding]);
        var views = new List<Tensor>();
        for (long offset = 0; offset < c * kernel * kernel; offset++)
        {
            long ch = offset / (kernel * kernel),
                i = offset / kernel % kernel,
                j = offset % kernel;
            views.Add(padded[.., ch, TensorIndex.Slice(i, i + height), TensorIndex.Slice(j, j + width)]);
        }
        var columns = stack(views, dim: -1).view(n * height * width, c * kernel * kernel);
        var output = addmm(bias, columns, weight.reshape(outChannels, -1).t(), beta: 1, alpha: 1);
        return output.view(n, height, width, outChannels).permute(0, 3, 1, 2).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// conv1 with its output in channels-last layout, for attacks (frozen weights, only the input gradient wanted).
    /// Forward: <see cref="FirstConvChannelsLast"/>. Backward: libtorch would copy the
    /// pooled gradient back to NCHW and run oneDNN's backward-data for one input channel, its slowest kernel
    /// (bench/RESULTS.md); here the channels-last gradient [N*H*W, 32] is multiplied by the weights [32, 9], which
    /// gives the gradient of the im2col columns, and fold (col2im) sums them into the input gradient.
    /// </summary>
    private sealed class FirstLayerForAttacks : autograd.SingleTensorFunction<FirstLayerForAttacks>
    {
        public override string Name => nameof(FirstLayerForAttacks);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, weight, bias) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
            ctx.save_for_backward([weight]);
            return FirstConvChannelsLast(x, weight, bias);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            using var scope = NewDisposeScope();
            var weight = ctx.get_saved_variables()[0];
            // Stride 1 and "same" padding: the gradient has the input's height and width.
            long n = gradOutput.shape[0],
                height = gradOutput.shape[2],
                width = gradOutput.shape[3],
                outChannels = weight.shape[0],
                kernel = weight.shape[2];
            var pixels = gradOutput.permute(0, 2, 3, 1).reshape(n * height * width, outChannels);
            var columns = pixels.matmul(weight.reshape(outChannels, -1)); // [N*H*W, k*k]
            var gradInput = functional.fold(
                columns.view(n, height * width, -1).transpose(1, 2),
                (height, width),
                (kernel, kernel),
                padding: (FirstPadding, FirstPadding)
            );
            return [gradInput.MoveToOuterDisposeScope(), null!, null!];
        }
    }
}

/// <summary>Pre-activation ResNet-18 (He et al. 2016), as used throughout the adversarial-training
/// literature.</summary>
public sealed class PreActResNet18 : Module<Tensor, Tensor>, IHasFeatures
{
    private readonly Conv2d conv1;
    private readonly Sequential layer1,
        layer2,
        layer3,
        layer4;
    private readonly BatchNorm2d bn;
    private readonly Linear linear;

    public PreActResNet18(int channels, int numClasses)
        : base("PreActResNet18")
    {
        conv1 = Conv2d(channels, 64, 3, padding: 1, bias: false);
        int inPlanes = 64;
        Sequential Layer(int planes, int stride)
        {
            var blocks = new List<(string, Module<Tensor, Tensor>)>();
            for (int i = 0; i < 2; i++)
            {
                blocks.Add((i.ToString(), new PreActBlock(inPlanes, planes, i == 0 ? stride : 1)));
                inPlanes = planes;
            }
            return Sequential(blocks);
        }
        layer1 = Layer(64, 1);
        layer2 = Layer(128, 2);
        layer3 = Layer(256, 2);
        layer4 = Layer(512, 2);
        bn = BatchNorm2d(512);
        linear = Linear(512, numClasses);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return linear.call(Features(x)).MoveToOuterDisposeScope();
    }

    public Tensor Features(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = layer4.call(layer3.call(layer2.call(layer1.call(conv1.call(x)))));
        return functional
            .adaptive_avg_pool2d(functional.relu(BatchNormSync.Normalise(bn, h)), 1)
            .flatten(1)
            .MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Pre-activation residual block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut; when the shape changes, a
/// 1x1 projection of the activated input. The same block serves PreAct ResNet (shortcut named "shortcut", as in Rice et
/// al.) and WideResNet (named "convShortcut", as in the TRADES/RobustBench code), so state-dict names match theirs.
/// </summary>
public sealed class PreActBlock : Module<Tensor, Tensor>
{
    private readonly BatchNorm2d bn1,
        bn2;
    private readonly Conv2d conv1,
        conv2;
    private readonly Conv2d? projection;

    public PreActBlock(int inPlanes, int planes, int stride, string shortcutName = "shortcut")
        : base("PreActBlock")
    {
        bn1 = BatchNorm2d(inPlanes);
        conv1 = Conv2d(inPlanes, planes, 3, stride: stride, padding: 1, bias: false);
        bn2 = BatchNorm2d(planes);
        conv2 = Conv2d(planes, planes, 3, padding: 1, bias: false);
        RegisterComponents();
        if (stride != 1 || inPlanes != planes)
        {
            projection = Conv2d(inPlanes, planes, 1, stride: stride, bias: false);
            register_module(shortcutName, projection);
        }
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var o = functional.relu(BatchNormSync.Normalise(bn1, x));
        var sc = projection is null ? x : projection.call(o);
        o = conv2.call(functional.relu(BatchNormSync.Normalise(bn2, conv1.call(o))));
        return (o + sc).MoveToOuterDisposeScope();
    }
}

/// <summary>WideResNet-depth-widen (Zagoruyko &amp; Komodakis 2016), the pre-activation variant of TRADES/robustness
/// code.</summary>
public sealed class WideResNet : Module<Tensor, Tensor>, IHasFeatures
{
    private readonly Conv2d conv1;
    private readonly Sequential block1,
        block2,
        block3;
    private readonly BatchNorm2d bn1;
    private readonly Linear fc;

    public WideResNet(int depth, int widen, int channels, int numClasses)
        : base("WideResNet")
    {
        int n = (depth - 4) / 6;
        int[] widths = [16, 16 * widen, 32 * widen, 64 * widen];
        conv1 = Conv2d(channels, widths[0], 3, padding: 1, bias: false);
        Sequential Group(int inW, int outW, int stride) =>
            Sequential(
                Enumerable
                    .Range(0, n)
                    .Select(i =>
                        (
                            i.ToString(),
                            (Module<Tensor, Tensor>)
                                new PreActBlock(i == 0 ? inW : outW, outW, i == 0 ? stride : 1, "convShortcut")
                        )
                    )
                    .ToList()
            );
        block1 = Group(widths[0], widths[1], 1);
        block2 = Group(widths[1], widths[2], 2);
        block3 = Group(widths[2], widths[3], 2);
        bn1 = BatchNorm2d(widths[3]);
        fc = Linear(widths[3], numClasses);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc.call(Features(x)).MoveToOuterDisposeScope();
    }

    public Tensor Features(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = block3.call(block2.call(block1.call(conv1.call(x))));
        return functional
            .adaptive_avg_pool2d(functional.relu(BatchNormSync.Normalise(bn1, h)), 1)
            .flatten(1)
            .MoveToOuterDisposeScope();
    }
}
