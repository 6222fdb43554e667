using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

public enum ScheduleKind
{
    /// <summary>Ho et al. 2020: beta linear from 1e-4 to 0.02 over 1,000 steps (scaled for other step
    /// counts).</summary>
    Linear,

    /// <summary>Nichol &amp; Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), s = 0.008, betas
    /// clipped at 0.999.</summary>
    Cosine,
}

/// <summary>What the network predicts: the noise (Ho et al.) or v = alpha eps - sigma x0 (Salimans &amp; Ho
/// 2022).</summary>
public enum Prediction
{
    Epsilon,
    V,
}

/// <summary>
/// The forward (noising) process of a discrete-time diffusion model: q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I) with
/// alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), alpha_bar_t = prod_{s &lt;= t} (1 - beta_s) (Ho et
/// al. 2020, eq. 4). Time steps are 0..T-1; all coefficients are kept in double and turned into tensors per batch.
/// </summary>
public sealed class NoiseSchedule
{
    public ScheduleKind Kind { get; }
    public int Steps { get; }
    public double[] Betas { get; }
    public double[] AlphaBars { get; }

    public NoiseSchedule(ScheduleKind kind, int steps = 1000)
    {
        if (steps < 2)
            throw new ArgumentOutOfRangeException(nameof(steps), "a schedule needs at least 2 steps");
        Kind = kind;
        Steps = steps;
        Betas = kind switch
        {
            ScheduleKind.Linear => LinearBetas(steps),
            _ => CosineBetas(steps),
        };
        AlphaBars = new double[steps];
        double product = 1;
        for (int t = 0; t < steps; t++)
            AlphaBars[t] = product *= 1 - Betas[t];
    }

    private static double[] LinearBetas(int steps)
    {
        // Ho et al.'s 1e-4 .. 0.02 for T = 1000, scaled by 1000/T so other step counts keep the same end point.
        double scale = 1000.0 / steps,
            lo = scale * 1e-4,
            hi = scale * 0.02;
        return Enumerable.Range(0, steps).Select(t => lo + (hi - lo) * t / (steps - 1)).ToArray();
    }

    /// <summary>alpha_bar(t) of the cosine schedule at continuous time t in [0, 1].</summary>
    public static double CosineAlphaBar(double t, double s = 0.008) =>
        Math.Pow(Math.Cos((t + s) / (1 + s) * Math.PI / 2), 2);

    private static double[] CosineBetas(int steps) =>
        Enumerable
            .Range(0, steps)
            .Select(t => Math.Min(1 - CosineAlphaBar((t + 1.0) / steps) / CosineAlphaBar((double)t / steps), 0.999))
            .ToArray();

    /// <summary>alpha_t = sqrt(alpha_bar_t); at t = -1 (the clean data), 1.</summary>
    public double Alpha(int t) => t < 0 ? 1 : Math.Sqrt(AlphaBars[t]);

    /// <summary>sigma_t = sqrt(1 - alpha_bar_t); at t = -1, 0.</summary>
    public double Sigma(int t) => t < 0 ? 0 : Math.Sqrt(1 - AlphaBars[t]);

    /// <summary>Per-example coefficients for a batch of time steps, shaped [N,1,1,1] to broadcast over
    /// images.</summary>
    public (Tensor Alpha, Tensor Sigma) Coefficients(Tensor t, Tensor like)
    {
        using var scope = NewDisposeScope();
        var ab = tensor(AlphaBars, dtype: ScalarType.Float64, device: like.device).index_select(0, t);
        var shape = new long[like.dim()];
        Array.Fill(shape, 1);
        shape[0] = -1;
        var alpha = ab.sqrt().to(like.dtype).view(shape);
        var sigma = (1 - ab).sqrt().to(like.dtype).view(shape);
        return (alpha.MoveToOuterDisposeScope(), sigma.MoveToOuterDisposeScope());
    }

    /// <summary>x_t = alpha_t x_0 + sigma_t eps: a sample of q(x_t | x_0) (Ho et al. eq. 4).</summary>
    public Tensor AddNoise(Tensor x0, Tensor t, Tensor noise)
    {
        using var scope = NewDisposeScope();
        var (alpha, sigma) = Coefficients(t, x0);
        return (alpha * x0 + sigma * noise).MoveToOuterDisposeScope();
    }

    /// <summary>The regression target of the network for prediction kind <paramref name="kind"/>.</summary>
    public Tensor Target(Prediction kind, Tensor x0, Tensor t, Tensor noise)
    {
        if (kind == Prediction.Epsilon)
            return noise.alias();
        using var scope = NewDisposeScope();
        var (alpha, sigma) = Coefficients(t, x0);
        return (alpha * noise - sigma * x0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The noise and clean-data estimates implied by a network output at x_t: for epsilon-prediction x0 = (x_t -
    /// sigma eps) / alpha; for v-prediction x0 = alpha x_t - sigma v and eps = sigma x_t + alpha v. With
    /// <paramref name="clip"/> the x0 estimate is clipped to [-1, 1] and eps recomputed from it (Ho et al.'s
    /// clipped sampling).
    /// </summary>
    public (Tensor Eps, Tensor X0) Estimates(Prediction kind, Tensor xt, Tensor output, int t, bool clip)
    {
        using var scope = NewDisposeScope();
        double alpha = Alpha(t),
            sigma = Sigma(t);
        Tensor eps,
            x0;
        if (kind == Prediction.Epsilon)
        {
            eps = output.alias();
            x0 = (xt - sigma * output) / alpha;
        }
        else
        {
            x0 = alpha * xt - sigma * output;
            eps = sigma * xt + alpha * output;
        }
        if (clip)
        {
            x0 = x0.clamp(-1, 1);
            eps = (xt - alpha * x0) / sigma;
        }
        return (eps.MoveToOuterDisposeScope(), x0.MoveToOuterDisposeScope());
    }
}
