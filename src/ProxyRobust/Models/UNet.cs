using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ProxyRobust.Models;

/// <summary>
/// The size of a diffusion UNet: image shape, class count (conditional; one more embedding row is the "no label" of
/// classifier-free guidance), base channels, a channel multiplier per resolution level, residual blocks per level, the
/// resolutions (image side in pixels) that get self-attention, and dropout.
/// </summary>
public sealed record UNetSpec(
    int Channels,
    int Height,
    int Width,
    int NumClasses,
    int BaseChannels = 32,
    int[]? ChannelMults = null,
    int ResBlocks = 2,
    int[]? AttentionResolutions = null,
    double Dropout = 0.1
)
{
    public int[] Mults => ChannelMults ?? [1, 2, 2];
    public int[] Attention => AttentionResolutions ?? [];

    public void Validate()
    {
        int levels = Mults.Length;
        if (levels < 1 || Mults.Any(m => m < 1))
            throw new ArgumentException("channel multipliers must be positive");
        if (BaseChannels < 8 || BaseChannels % 8 != 0)
            throw new ArgumentException("base channels must be a positive multiple of 8");
        if (ResBlocks < 1)
            throw new ArgumentException("a UNet level needs at least one residual block");
        int div = 1 << (levels - 1);
        if (Height % div != 0 || Width % div != 0)
            throw new ArgumentException(
                $"{Height}x{Width} images cannot be halved {levels - 1} times; use fewer channel multipliers"
            );
        if (Dropout is < 0 or >= 1)
            throw new ArgumentException("dropout must be in [0, 1)");
    }

    public override string ToString() =>
        $"UNet {Channels}x{Height}x{Width}, {NumClasses} classes, base {BaseChannels}, mults "
        + $"{string.Join("-", Mults)}, {ResBlocks} res-blocks, attention at [{string.Join(",", Attention)}]";
}

/// <summary>
/// The class-conditional UNet of DDPM (Ho et al. 2020, appendix B; as in Dhariwal &amp; Nichol's code): a sinusoidal
/// time embedding and a class embedding, summed and fed to every residual block; per resolution level ResBlocks
/// residual blocks (GroupNorm-SiLU-conv, the embedding added, GroupNorm-SiLU-dropout-conv, zero-initialised), optional
/// self-attention, and a stride-2 convolution down; a middle block with attention; the mirror path up with skip
/// connections (one more block per level) and nearest-neighbour upsampling followed by a convolution.
/// Input: x_t (N x C x H x W, in the model's [-1, 1] scale), the time step (N, int64) and the label (N, int64; the
/// value NumClasses means "no label").
/// </summary>
public sealed class UNet : Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly Linear timeIn,
        timeOut;
    private readonly Embedding classEmbedding;
    private readonly Conv2d input;
    private readonly ModuleList<Module<Tensor, Tensor, Tensor>> down;
    private readonly ModuleList<Module<Tensor, Tensor, Tensor>> middle;
    private readonly ModuleList<Module<Tensor, Tensor, Tensor>> up;
    private readonly GroupNormSilu outNorm;
    private readonly Conv2d output;
    private readonly bool[] downIsSkip;
    private readonly bool[] upTakesSkip;

    public UNetSpec Spec { get; }

    public UNet(UNetSpec spec)
        : base("UNet")
    {
        spec.Validate();
        Spec = spec;
        int b = spec.BaseChannels,
            emb = 4 * b;
        timeIn = Linear(b, emb);
        timeOut = Linear(emb, emb);
        classEmbedding = Embedding(spec.NumClasses + 1, emb);
        input = Conv2d(spec.Channels, b, 3, padding: 1);

        var downBlocks = new List<Module<Tensor, Tensor, Tensor>>();
        var skipFlags = new List<bool>();
        var skipChannels = new Stack<int>();
        skipChannels.Push(b);
        int ch = b,
            side = spec.Height;
        for (int level = 0; level < spec.Mults.Length; level++)
        {
            int outCh = b * spec.Mults[level];
            for (int r = 0; r < spec.ResBlocks; r++)
            {
                downBlocks.Add(Block(ch, outCh, emb, spec.Dropout, spec.Attention.Contains(side)));
                skipFlags.Add(true);
                skipChannels.Push(outCh);
                ch = outCh;
            }
            if (level < spec.Mults.Length - 1)
            {
                downBlocks.Add(new Resample(ch, down: true));
                skipFlags.Add(true);
                skipChannels.Push(ch);
                side /= 2;
            }
        }
        var middleBlocks = new List<Module<Tensor, Tensor, Tensor>>
        {
            new ResBlock(ch, ch, emb, spec.Dropout),
            new Attention(ch),
            new ResBlock(ch, ch, emb, spec.Dropout),
        };
        var upBlocks = new List<Module<Tensor, Tensor, Tensor>>();
        var takesSkip = new List<bool>();
        for (int level = spec.Mults.Length - 1; level >= 0; level--)
        {
            int outCh = b * spec.Mults[level];
            for (int r = 0; r <= spec.ResBlocks; r++)
            {
                upBlocks.Add(Block(ch + skipChannels.Pop(), outCh, emb, spec.Dropout, spec.Attention.Contains(side)));
                takesSkip.Add(true);
                ch = outCh;
            }
            if (level > 0)
            {
                upBlocks.Add(new Resample(ch, down: false));
                takesSkip.Add(false);
                side *= 2;
            }
        }
        down = new ModuleList<Module<Tensor, Tensor, Tensor>>(downBlocks.ToArray());
        middle = new ModuleList<Module<Tensor, Tensor, Tensor>>(middleBlocks.ToArray());
        up = new ModuleList<Module<Tensor, Tensor, Tensor>>(upBlocks.ToArray());
        downIsSkip = [.. skipFlags];
        upTakesSkip = [.. takesSkip];
        outNorm = new GroupNormSilu(Groups(ch), ch, silu: true);
        output = Conv2d(ch, spec.Channels, 3, padding: 1);
        RegisterComponents();
        using (no_grad())
        {
            output.weight!.zero_();
            output.bias!.zero_();
        }
    }

    private static Module<Tensor, Tensor, Tensor> Block(int inCh, int outCh, int emb, double dropout, bool attention) =>
        attention
            ? new ResAttention(new ResBlock(inCh, outCh, emb, dropout), new Attention(outCh))
            : new ResBlock(inCh, outCh, emb, dropout);

    /// <summary>GroupNorm groups: 32 as in DDPM where the channels allow at least 4 per group, fewer for narrow
    /// layers.</summary>
    internal static int Groups(int channels)
    {
        foreach (int g in new[] { 32, 16, 8, 4, 2 })
            if (channels % g == 0 && channels / g >= 4)
                return g;
        return 1;
    }

    /// <summary>Sinusoidal embedding of the time step (Vaswani et al.; DDPM's timestep embedding), dim
    /// features.</summary>
    public static Tensor TimeEmbedding(Tensor t, int dim)
    {
        using var scope = NewDisposeScope();
        int half = dim / 2;
        var freqs = exp(arange(half, dtype: ScalarType.Float32, device: t.device) * (-Math.Log(10000) / (half - 1)));
        var args = t.to(ScalarType.Float32).view(-1, 1) * freqs.view(1, -1);
        return cat([sin(args), cos(args)], 1).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor x, Tensor t, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var e = timeOut.call(functional.silu(timeIn.call(TimeEmbedding(t, Spec.BaseChannels))));
        e = e + classEmbedding.call(labels);
        // Channels-last from the first convolution's output on (that convolution, one input channel, stays NCHW):
        // oneDNN then runs every other convolution on the activations as they are, without reordering them into its
        // blocked layout and back, and GroupNormSilu has its fused kernels for that layout (bench/RESULTS.md).
        var h = ChannelsLast ? Classifier.ToChannelsLast(input.call(x)) : input.call(x);
        var skips = new Stack<Tensor>();
        skips.Push(h);
        for (int i = 0; i < down.Count; i++)
        {
            h = down[i].call(h, e);
            if (downIsSkip[i])
                skips.Push(h);
        }
        foreach (var m in middle)
            h = m.call(h, e);
        for (int i = 0; i < up.Count; i++)
            h = up[i].call(upTakesSkip[i] ? cat([h, skips.Pop()], 1) : h, e);
        return output.call(outNorm.call(h)).MoveToOuterDisposeScope();
    }

    public long ParameterCount() => parameters().Sum(p => p.numel());

    /// <summary>Whether activations after the first convolution are kept channels-last (the default, faster on CPU;
    /// bench/RESULTS.md) or NCHW; the weights and the results are the same either way, up to float32
    /// rounding.</summary>
    public bool ChannelsLast { get; set; } = true;
}

/// <summary>A residual block conditioned on the embedding: h = conv(SiLU(GN(x))) + W e; out = skip(x) +
/// conv(dropout(SiLU(GN(h)))), the last convolution zero-initialised so every block starts as the identity.</summary>
internal sealed class ResBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNormSilu norm1,
        norm2;
    private readonly Conv2d conv1,
        conv2;
    private readonly Linear embedding;
    private readonly ParallelDropout dropout;
    private readonly Conv2d? skip;

    public ResBlock(int inCh, int outCh, int emb, double p)
        : base("ResBlock")
    {
        norm1 = new GroupNormSilu(UNet.Groups(inCh), inCh, silu: true);
        conv1 = Conv2d(inCh, outCh, 3, padding: 1);
        embedding = Linear(emb, outCh);
        norm2 = new GroupNormSilu(UNet.Groups(outCh), outCh, silu: true);
        dropout = new ParallelDropout(p);
        conv2 = Conv2d(outCh, outCh, 3, padding: 1);
        skip = inCh == outCh ? null : Conv2d(inCh, outCh, 1);
        RegisterComponents();
        using (no_grad())
        {
            conv2.weight!.zero_();
            conv2.bias!.zero_();
        }
    }

    public override Tensor forward(Tensor x, Tensor e)
    {
        using var scope = NewDisposeScope();
        var h = conv1.call(norm1.call(x));
        // dropout(SiLU(GN(h + embedding))) in one kernel where the layout allows (GroupNormSilu.Apply).
        h = conv2.call(norm2.Apply(h, embedding.call(functional.silu(e)), dropout));
        return ((skip is null ? x : skip.call(x)) + h).MoveToOuterDisposeScope();
    }
}

/// <summary>Single-head self-attention over the pixels, with a residual connection; the output projection
/// starts at zero.</summary>
internal sealed class Attention : Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNormSilu norm;
    private readonly Conv2d qkv,
        proj;

    public Attention(int ch)
        : base("Attention")
    {
        norm = new GroupNormSilu(UNet.Groups(ch), ch, silu: false);
        qkv = Conv2d(ch, 3 * ch, 1);
        proj = Conv2d(ch, ch, 1);
        RegisterComponents();
        using (no_grad())
        {
            proj.weight!.zero_();
            proj.bias!.zero_();
        }
    }

    public override Tensor forward(Tensor x, Tensor e)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0],
            c = x.shape[1],
            hw = x.shape[2] * x.shape[3];
        // reshape, not view: a channels-last qkv output is copied to this [n, 3, c, hw] layout.
        var parts = qkv.call(norm.call(x)).reshape(n, 3, c, hw).unbind(1);
        var (q, k, v) = (parts[0], parts[1], parts[2]);
        var weights = functional.softmax(q.transpose(1, 2).bmm(k) / Math.Sqrt(c), -1); // [n, hw, hw]
        var attended = v.bmm(weights.transpose(1, 2)).view(x.shape);
        if (Classifier.IsChannelsLast(x))
            attended = Classifier.ToChannelsLast(attended);
        return (x + proj.call(attended)).MoveToOuterDisposeScope();
    }
}

internal sealed class ResAttention : Module<Tensor, Tensor, Tensor>
{
    private readonly ResBlock block;
    private readonly Attention attention;

    public ResAttention(ResBlock block, Attention attention)
        : base("ResAttention")
    {
        this.block = block;
        this.attention = attention;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor e) => attention.call(block.call(x, e), e);
}

/// <summary>Halves the resolution with a stride-2 convolution, or doubles it by nearest-neighbour upsampling and a
/// convolution.</summary>
internal sealed class Resample : Module<Tensor, Tensor, Tensor>
{
    private readonly Conv2d conv;
    private readonly bool isDown;

    public Resample(int ch, bool down)
        : base(down ? "Downsample" : "Upsample")
    {
        isDown = down;
        conv = down ? Conv2d(ch, ch, 3, stride: 2, padding: 1) : Conv2d(ch, ch, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor e)
    {
        if (isDown)
            return conv.call(x);
        using var scope = NewDisposeScope();
        var up = functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
        return conv.call(up).MoveToOuterDisposeScope();
    }
}
