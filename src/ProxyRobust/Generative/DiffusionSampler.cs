using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>The network's output (in its <see cref="Prediction"/> parameterisation) at x_t for time step t, the same t
/// for every row.</summary>
public delegate Tensor Denoiser(Tensor xt, int t);

public enum SamplerKind
{
    /// <summary>Ho et al. 2020, Algorithm 2, with the posterior variance beta~_t: every one of the T steps.</summary>
    Ancestral,

    /// <summary>Song et al. 2021 (DDIM), eq. 12, on a subsequence of the steps; eta 0 is deterministic, eta 1 with all
    /// steps is the ancestral sampler.</summary>
    Ddim,

    /// <summary>Lu et al. 2022, DPM-Solver++(2M) (Algorithm 2): a second-order multistep solver of the probability-flow
    /// ODE in data prediction, one network evaluation per step.</summary>
    DpmSolver2M,
}

/// <summary>Where the network evaluations fall between the noisiest and the cleanest step.</summary>
public enum TimeSpacing
{
    /// <summary>Evenly spaced time steps (DDIM's choice).</summary>
    Uniform,

    /// <summary>Evenly spaced in lambda = log(alpha / sigma), the solver's own variable (DPM-Solver's recommendation
    /// for low-resolution images): many more steps at low noise, where the samples take their final shape.</summary>
    LogSnr,
}

/// <summary>How to sample: which sampler, how many network evaluations (steps), DDIM's eta, whether the x0 estimate is
/// clipped to [-1, 1] at every step, the time spacing (null: uniform for DDIM, log-SNR for DPM-Solver++), and the
/// noisiest step evaluated (null: T-1; the starting noise is taken as x at that step).</summary>
public sealed record SamplerOptions(
    SamplerKind Kind = SamplerKind.Ddim,
    int Steps = 50,
    double Eta = 0,
    bool Clip = true,
    TimeSpacing? Spacing = null,
    int? FirstStep = null
)
{
    public TimeSpacing SpacingOrDefault =>
        Spacing ?? (Kind == SamplerKind.DpmSolver2M ? TimeSpacing.LogSnr : TimeSpacing.Uniform);
}

/// <summary>Samplers of a discrete-time diffusion model, from x_T ~ N(0, I) to x_0, for any denoiser.</summary>
public static class DiffusionSampler
{
    /// <summary>
    /// The time steps at which the network is evaluated, from noisiest to cleanest: <paramref name="steps"/> evenly
    /// spaced indices from T-1 down to 0, both ends included (with steps = T: T-1, T-2, ..., 0). After the last the
    /// sampler steps to the clean data (t = -1) with the x0 estimate at t = 0, whose noise level is tiny; a grid that
    /// stopped at T/steps - 1 instead (diffusers' "trailing") would end on the posterior mean at a visible noise level,
    /// which shrinks the samples' spread (the Gaussian test in DiffusionTests shows it).
    /// </summary>
    public static int[] TimeGrid(int trainSteps, int steps, int? first = null)
    {
        int top = first ?? trainSteps - 1;
        if (top < 0 || top >= trainSteps)
            throw new ArgumentOutOfRangeException(nameof(first), $"the first step must be in 0..{trainSteps - 1}");
        if (steps < 1 || steps > top + 1)
            throw new ArgumentOutOfRangeException(nameof(steps), $"steps must be in 1..{top + 1}");
        if (steps == 1)
            return [top];
        return Enumerable.Range(0, steps).Select(i => (int)Math.Round(top * (1 - (double)i / (steps - 1)))).ToArray();
    }

    /// <summary>
    /// The grid for a spacing: <see cref="TimeGrid(int, int)"/> for uniform; for log-SNR the steps nearest to evenly
    /// spaced lambda values from lambda(T-1) to lambda(0), made strictly decreasing (at both ends lambda moves fast
    /// from one step to the next and several values would fall on the same step), so that every evaluation is at a
    /// distinct step.
    /// </summary>
    public static int[] TimeGrid(NoiseSchedule schedule, int steps, TimeSpacing spacing, int? first = null)
    {
        var uniform = TimeGrid(schedule.Steps, steps, first);
        if (spacing == TimeSpacing.Uniform || steps < 3)
            return uniform;
        int last = first ?? schedule.Steps - 1;
        var lambda = Enumerable
            .Range(0, last + 1)
            .Select(t => Math.Log(schedule.Alpha(t) / schedule.Sigma(t)))
            .ToArray();
        var grid = new int[steps];
        for (int i = 0; i < steps; i++)
        {
            double target = lambda[last] + (lambda[0] - lambda[last]) * i / (steps - 1);
            // lambda decreases with t: the last step whose lambda is still at least the target, or its neighbour
            int t = Array.FindLastIndex(lambda, l => l >= target);
            if (t < last && t >= 0 && Math.Abs(lambda[t + 1] - target) < Math.Abs(lambda[t] - target))
                t++;
            grid[i] = Math.Clamp(t, 0, last);
        }
        // distinct steps: room for the steps before and after each one, then strictly decreasing
        for (int i = 0; i < steps; i++)
            grid[i] = Math.Clamp(grid[i], steps - 1 - i, last - i);
        grid[0] = last;
        for (int i = 1; i < steps; i++)
            grid[i] = Math.Min(grid[i], grid[i - 1] - 1);
        grid[^1] = 0;
        return grid;
    }

    /// <param name="xT">the starting noise, N(0, I)</param>
    /// <param name="generator">the random stream of the stochastic samplers (ancestral; DDIM with eta &gt; 0)</param>
    /// <param name="step">called after each network evaluation with the number done</param>
    public static Tensor Sample(
        NoiseSchedule schedule,
        Prediction prediction,
        Denoiser denoiser,
        Tensor xT,
        SamplerOptions options,
        Generator? generator = null,
        Action<int>? step = null,
        CancellationToken cancel = default
    )
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        if (options.Kind == SamplerKind.Ancestral && options.Steps != schedule.Steps)
            throw new ArgumentException(
                $"the ancestral sampler takes every one of the {schedule.Steps} steps; use DDIM with eta 1 for fewer"
            );
        var grid = TimeGrid(schedule, options.Steps, options.SpacingOrDefault, options.FirstStep);
        var x = xT.detach().clone();
        Tensor? previousX0 = null;
        double previousH = 0;
        for (int i = 0; i < grid.Length; i++)
        {
            cancel.ThrowIfCancellationRequested();
            int t = grid[i],
                s = i + 1 < grid.Length ? grid[i + 1] : -1;
            var (eps, x0) = schedule.Estimates(prediction, x, denoiser(x, t), t, options.Clip);
            x = options.Kind switch
            {
                SamplerKind.Ancestral => AncestralStep(schedule, x, x0, t, generator),
                SamplerKind.Ddim => DdimStep(schedule, x0, eps, t, s, options.Eta, generator),
                _ => DpmSolverStep(schedule, x, x0, previousX0, t, s, ref previousH),
            };
            previousX0 = x0;
            scope.DisposeEverythingBut(x, previousX0);
            step?.Invoke(i + 1);
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>x_{t-1} ~ q(x_{t-1} | x_t, x0): mean sqrt(ab_{t-1}) beta_t / (1 - ab_t) x0 + sqrt(1 - beta_t)
    /// (1 - ab_{t-1}) / (1 - ab_t) x_t, variance beta~_t = (1 - ab_{t-1}) / (1 - ab_t) beta_t (Ho et al. eqs.
    /// 6-7).</summary>
    private static Tensor AncestralStep(NoiseSchedule sc, Tensor x, Tensor x0, int t, Generator? g)
    {
        double abT = sc.AlphaBars[t],
            abPrev = t > 0 ? sc.AlphaBars[t - 1] : 1,
            beta = sc.Betas[t];
        var mean = x0 * (Math.Sqrt(abPrev) * beta / (1 - abT)) + x * (Math.Sqrt(1 - beta) * (1 - abPrev) / (1 - abT));
        if (t == 0)
            return mean;
        double variance = (1 - abPrev) / (1 - abT) * beta;
        return mean + Math.Sqrt(variance) * randn(x.shape, dtype: x.dtype, device: x.device, generator: g);
    }

    /// <summary>DDIM (Song et al. eq. 12): x_s = alpha_s x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z, with sigma = eta
    /// sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s).</summary>
    private static Tensor DdimStep(NoiseSchedule sc, Tensor x0, Tensor eps, int t, int s, double eta, Generator? g)
    {
        double abT = sc.AlphaBars[t],
            abS = s >= 0 ? sc.AlphaBars[s] : 1;
        double sigma = eta * Math.Sqrt((1 - abS) / (1 - abT) * (1 - abT / abS));
        var next = x0 * Math.Sqrt(abS) + eps * Math.Sqrt(Math.Max(0, 1 - abS - sigma * sigma));
        if (sigma <= 0)
            return next;
        return next + sigma * randn(x0.shape, dtype: x0.dtype, device: x0.device, generator: g);
    }

    /// <summary>
    /// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), with lambda_t = log(alpha_t / sigma_t) and h = lambda_s -
    /// lambda_t: x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D, where D = x0 at the first step and
    /// (1 + 1/(2r)) x0_t - 1/(2r) x0_prev after it (r = h_prev / h). The last step, to the clean data (sigma = 0,
    /// lambda = infinity), is first order: x_0 = x0_t (as the solver's "lower order final").
    /// </summary>
    private static Tensor DpmSolverStep(
        NoiseSchedule sc,
        Tensor x,
        Tensor x0,
        Tensor? previousX0,
        int t,
        int s,
        ref double previousH
    )
    {
        if (s < 0)
            return x0.alias();
        double lambdaT = Math.Log(sc.Alpha(t) / sc.Sigma(t)),
            lambdaS = Math.Log(sc.Alpha(s) / sc.Sigma(s));
        double h = lambdaS - lambdaT;
        Tensor d;
        if (previousX0 is null)
            d = x0.alias();
        else
        {
            double r = previousH / h;
            d = x0 * (1 + 1 / (2 * r)) - previousX0 * (1 / (2 * r));
        }
        previousH = h;
        return x * (sc.Sigma(s) / sc.Sigma(t)) - d * (sc.Alpha(s) * (Math.Exp(-h) - 1));
    }
}
