using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ProxyRobust.Models;

/// <summary>The size of a class-conditional GAN: image shape, classes, latent dimension and base width (channels of
/// the widest generator layer / 4).</summary>
public sealed record GanSpec(
    int Channels,
    int Height,
    int Width,
    int NumClasses,
    int LatentDim = 128,
    int BaseWidth = 64
)
{
    public void Validate()
    {
        if (Height % 4 != 0 || Width % 4 != 0)
            throw new ArgumentException($"the GAN upsamples twice by 2: {Height}x{Width} is not a multiple of 4");
        if (LatentDim < 1 || BaseWidth < 8)
            throw new ArgumentException("latent dimension and base width must be positive (base width at least 8)");
    }

    public override string ToString() =>
        $"GAN {Channels}x{Height}x{Width}, {NumClasses} classes, latent {LatentDim}, width {BaseWidth}";
}

/// <summary>
/// DCGAN-style conditional generator (Radford et al. 2016): [z, embedding(label)] -> linear to 4w x H/4 x W/4, then two
/// stride-2 transposed convolutions (4w -> 2w -> w) with batch norm and ReLU, a 3x3 convolution to the image channels
/// and tanh. Output in [-1, 1].
/// </summary>
public sealed class GanGenerator : Module<Tensor, Tensor, Tensor>
{
    private readonly Embedding embedding;
    private readonly Linear project;
    private readonly BatchNorm1d bn0;
    private readonly ConvTranspose2d up1,
        up2;
    private readonly BatchNorm2d bn1,
        bn2;
    private readonly Conv2d toImage;

    public GanSpec Spec { get; }

    public GanGenerator(GanSpec spec)
        : base("GanGenerator")
    {
        spec.Validate();
        Spec = spec;
        int w = spec.BaseWidth;
        embedding = Embedding(spec.NumClasses, spec.LatentDim);
        project = Linear(2 * spec.LatentDim, 4 * w * (spec.Height / 4) * (spec.Width / 4));
        bn0 = BatchNorm1d(4 * w * (spec.Height / 4) * (spec.Width / 4));
        up1 = ConvTranspose2d(4 * w, 2 * w, 4, stride: 2, padding: 1);
        bn1 = BatchNorm2d(2 * w);
        up2 = ConvTranspose2d(2 * w, w, 4, stride: 2, padding: 1);
        bn2 = BatchNorm2d(w);
        toImage = Conv2d(w, spec.Channels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor z, Tensor labels)
    {
        using var scope = NewDisposeScope();
        int w = Spec.BaseWidth;
        var h = functional.relu(bn0.call(project.call(cat([z, embedding.call(labels)], 1))));
        h = h.view(-1, 4 * w, Spec.Height / 4, Spec.Width / 4);
        h = functional.relu(bn1.call(up1.call(h)));
        h = functional.relu(bn2.call(up2.call(h)));
        return tanh(toImage.call(h)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Projection discriminator (Miyato &amp; Koyama 2018) with spectral normalisation on every layer (Miyato et al. 2018):
/// the "standard CNN" of Miyato et al. (Table 3) cut to two down-samplings for small images: 3x3 w, 4x4/2 w, 3x3 2w,
/// 4x4/2 2w, 3x3 4w, each followed by leaky ReLU 0.1; sum pooling to phi(x), and the score psi(phi(x)) + embedding(y) .
/// phi(x). (A three-layer version, 4x4/2 w, 4x4/2 2w, 3x3 4w, was too weak: its hinge loss stayed near 1.5 and the
/// generator collapsed to one image per class, docs/GENERATORS.md.)
/// </summary>
public sealed class ProjectionDiscriminator : Module<Tensor, Tensor, Tensor>
{
    private readonly ModuleList<SpectralNormConv2d> convs;
    private readonly SpectralNormLinear score;
    private readonly SpectralNormLinear classProjection;

    public GanSpec Spec { get; }

    public ProjectionDiscriminator(GanSpec spec)
        : base("ProjectionDiscriminator")
    {
        spec.Validate();
        Spec = spec;
        int w = spec.BaseWidth;
        convs = new ModuleList<SpectralNormConv2d>(
            new SpectralNormConv2d(spec.Channels, w, 3, 1, 1),
            new SpectralNormConv2d(w, w, 4, 2, 1),
            new SpectralNormConv2d(w, 2 * w, 3, 1, 1),
            new SpectralNormConv2d(2 * w, 2 * w, 4, 2, 1),
            new SpectralNormConv2d(2 * w, 4 * w, 3, 1, 1)
        );
        score = new SpectralNormLinear(4 * w, 1);
        // the class embedding as a bias-free linear map of the one-hot label, normalised like the rest
        classProjection = new SpectralNormLinear(spec.NumClasses, 4 * w, bias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var conv in convs)
            h = functional.leaky_relu(conv.call(h), 0.1);
        var phi = h.sum([2, 3]);
        var embedded = classProjection.call(functional.one_hot(labels, Spec.NumClasses).to(phi.dtype));
        return (score.call(phi).squeeze(1) + (embedded * phi).sum(1)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Spectral normalisation (Miyato et al. 2018, Algorithm 1): the weight divided by an estimate of its largest singular
/// value, sigma = u^T W v, where u and v come from one step of power iteration per training forward pass (u is kept as
/// a buffer, so the estimate improves over training and is saved with the weights).
/// </summary>
internal static class SpectralNorm
{
    public static Tensor Normalised(Parameter weight, Tensor u, bool training)
    {
        using var scope = NewDisposeScope();
        var w2 = weight.view(weight.shape[0], -1);
        if (training)
            using (no_grad())
            {
                var v = functional.normalize(w2.t().mv(u), dim: 0, eps: 1e-12);
                u.copy_(functional.normalize(w2.mv(v), dim: 0, eps: 1e-12));
            }
        // u is updated in place by the next forward (the discriminator sees real, then fake images in one step): this
        // pass keeps its own copy for backward, as PyTorch's spectral_norm does
        Tensor uNow,
            vNow;
        using (no_grad())
        {
            uNow = u.clone();
            vNow = functional.normalize(w2.t().mv(uNow), dim: 0, eps: 1e-12);
        }
        var sigma = uNow.dot(w2.mv(vNow));
        return (weight / sigma).MoveToOuterDisposeScope();
    }

    /// <summary>The current estimate of the largest singular value (for tests).</summary>
    public static double Sigma(Parameter weight, Tensor u)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var w2 = weight.view(weight.shape[0], -1);
        var v = functional.normalize(w2.t().mv(u), dim: 0, eps: 1e-12);
        return u.dot(w2.mv(v)).item<float>();
    }
}

public sealed class SpectralNormConv2d : Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly Tensor u;
    private readonly long stride,
        padding;

    public SpectralNormConv2d(int inCh, int outCh, int kernel, int stride, int padding)
        : base("SpectralNormConv2d")
    {
        using var conv = Conv2d(inCh, outCh, kernel, stride: stride, padding: padding);
        weight = new Parameter(conv.weight!.detach().clone());
        bias = new Parameter(conv.bias!.detach().clone());
        u = functional.normalize(randn(outCh), dim: 0);
        (this.stride, this.padding) = (stride, padding);
        RegisterComponents();
    }

    public double Sigma => SpectralNorm.Sigma(weight, u);

    public override Tensor forward(Tensor x)
    {
        using var w = SpectralNorm.Normalised(weight, u, training);
        return functional.conv2d(x, w, bias, strides: [stride, stride], padding: [padding, padding]);
    }
}

public sealed class SpectralNormLinear : Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly Tensor u;

    public SpectralNormLinear(int inFeatures, int outFeatures, bool bias = true)
        : base("SpectralNormLinear")
    {
        using var lin = Linear(inFeatures, outFeatures, hasBias: bias);
        weight = new Parameter(lin.weight!.detach().clone());
        this.bias = bias ? new Parameter(lin.bias!.detach().clone()) : null;
        u = functional.normalize(randn(outFeatures), dim: 0);
        RegisterComponents();
    }

    public double Sigma => SpectralNorm.Sigma(weight, u);

    public override Tensor forward(Tensor x)
    {
        using var w = SpectralNorm.Normalised(weight, u, training);
        return functional.linear(x, w, bias);
    }
}
