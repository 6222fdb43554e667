using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>A class-conditional diffusion model's settings: the network, the noise schedule and its number of steps,
/// what the network predicts, and the label-dropout rate of classifier-free guidance training.</summary>
public sealed record DdpmSpec(
    UNetSpec Net,
    ScheduleKind Schedule = ScheduleKind.Cosine,
    int Steps = 1000,
    Prediction Prediction = Prediction.Epsilon,
    double LabelDropout = 0.1
)
{
    public void Validate()
    {
        Net.Validate();
        if (Steps < 2)
            throw new ArgumentException("a diffusion schedule needs at least 2 steps");
        if (LabelDropout is < 0 or >= 1)
            throw new ArgumentException("label dropout must be in [0, 1)");
    }
}

/// <summary>
/// A class-conditional DDPM (Ho et al. 2020) with classifier-free guidance (Ho &amp; Salimans 2022): the UNet sees x_t
/// in [-1, 1] (images are scaled 2x - 1), the time step and the label; during training the label is replaced by "no
/// label" with probability LabelDropout, so the same network also models the unconditional distribution.
/// </summary>
public sealed class Ddpm : IDisposable
{
    public DdpmSpec Spec { get; }
    public UNet Net { get; }
    public NoiseSchedule Schedule { get; }

    public Ddpm(DdpmSpec spec, UNet? net = null)
    {
        spec.Validate();
        Spec = spec;
        Net = net ?? new UNet(spec.Net);
        Schedule = new NoiseSchedule(spec.Schedule, spec.Steps);
    }

    /// <summary>
    /// The simple training loss (Ho et al. Algorithm 1, eq. 14): t uniform over the steps, x_t = alpha_t x0 + sigma_t
    /// eps, mean squared error between the network output and its target (eps, or v).
    /// </summary>
    /// <param name="images">clean images in [0, 1], N x C x H x W</param>
    public Tensor Loss(Tensor images, Tensor labels, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        long n = images.shape[0];
        var x0 = images * 2 - 1;
        var t = randint(0, Schedule.Steps, [n], dtype: ScalarType.Int64, device: images.device, generator: generator);
        var noise = randn(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator);
        var conditioning = labels;
        if (Spec.LabelDropout > 0)
        {
            var drop = rand(n, device: images.device, generator: generator).lt(Spec.LabelDropout);
            conditioning = where(drop, full_like(labels, Spec.Net.NumClasses), labels);
        }
        var output = Net.call(Schedule.AddNoise(x0, t, noise), t, conditioning);
        var target = Schedule.Target(Spec.Prediction, x0, t, noise);
        return nn.functional.mse_loss(output, target).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The denoiser for a batch of labels with guidance scale w: w = 1 is the conditional model alone, w = 0 the
    /// unconditional one, w &gt; 1 extrapolates: out = out(no label) + w (out(label) - out(no label)), both halves in
    /// one forward pass.
    /// </summary>
    public Denoiser Denoiser(Tensor labels, double guidance = 1)
    {
        return (x, t) =>
        {
            using var scope = NewDisposeScope();
            long n = x.shape[0];
            if (guidance == 1)
                return Net.call(x, full(n, t, dtype: ScalarType.Int64, device: x.device), labels)
                    .MoveToOuterDisposeScope();
            var none = full_like(labels, Spec.Net.NumClasses);
            var both = Net.call(
                cat([x, x]),
                full(2 * n, t, dtype: ScalarType.Int64, device: x.device),
                cat([labels, none])
            );
            var conditional = both.narrow(0, 0, n);
            var unconditional = both.narrow(0, n, n);
            return (unconditional + (conditional - unconditional) * guidance).MoveToOuterDisposeScope();
        };
    }

    /// <summary>Images for the given labels, in [0, 1] (N x C x H x W), from noise drawn from
    /// <paramref name="generator"/>.</summary>
    public Tensor Sample(
        Tensor labels,
        SamplerOptions options,
        double guidance = 1,
        Generator? generator = null,
        Action<int>? step = null,
        CancellationToken cancel = default
    )
    {
        using var scope = NewDisposeScope();
        bool wasTraining = Net.training;
        Net.eval();
        try
        {
            var s = Spec.Net;
            var xT = randn(
                [labels.shape[0], s.Channels, s.Height, s.Width],
                device: labels.device,
                generator: generator
            );
            var x = DiffusionSampler.Sample(
                Schedule,
                Spec.Prediction,
                Denoiser(labels, guidance),
                xT,
                options,
                generator,
                step,
                cancel
            );
            return ((x + 1) / 2).clamp(0, 1).MoveToOuterDisposeScope();
        }
        finally
        {
            Net.train(wasTraining);
        }
    }

    public void Dispose() => Net.Dispose();
}
