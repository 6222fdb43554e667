using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Generative;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class DiffusionTests
{
    public DiffusionTests() => TestSupport.InitTorch();

    [Theory]
    [InlineData(ScheduleKind.Linear)]
    [InlineData(ScheduleKind.Cosine)]
    public void Forward_process_run_step_by_step_matches_its_closed_form(ScheduleKind kind)
    {
        // x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z, iterated from x_0, must be N(alpha_t x_0, sigma_t^2) at
        // every t (Ho et al. eq. 4); checked at four times on 100,000 paths in double, to Monte-Carlo accuracy (5
        // standard errors).
        var schedule = new NoiseSchedule(kind, 400);
        using var g = new Generator(7);
        const int n = 100_000;
        const double x0 = 0.7;
        var x = full(n, x0, dtype: ScalarType.Float64);
        foreach (int t in Enumerable.Range(0, 400))
        {
            double beta = schedule.Betas[t];
            x = x * Math.Sqrt(1 - beta) + randn(n, dtype: ScalarType.Float64, generator: g) * Math.Sqrt(beta);
            if (t is not (0 or 50 or 200 or 399))
                continue;
            double mean = x.mean().item<double>(),
                variance = x.var().item<double>();
            double sigma2 = 1 - schedule.AlphaBars[t];
            Assert.InRange(
                mean,
                schedule.Alpha(t) * x0 - 5 * Math.Sqrt(sigma2 / n),
                schedule.Alpha(t) * x0 + 5 * Math.Sqrt(sigma2 / n)
            );
            Assert.InRange(variance, sigma2 * (1 - 5 * Math.Sqrt(2.0 / n)), sigma2 * (1 + 5 * Math.Sqrt(2.0 / n)));
            // and AddNoise draws from the same distribution in one step
            using var one = schedule.AddNoise(
                full([n, 1, 1, 1], x0, dtype: ScalarType.Float64),
                full(n, t, dtype: ScalarType.Int64),
                randn([n, 1, 1, 1], dtype: ScalarType.Float64, generator: g)
            );
            Assert.InRange(
                one.mean().item<double>(),
                mean - 7 * Math.Sqrt(sigma2 / n),
                mean + 7 * Math.Sqrt(sigma2 / n)
            );
        }
        if (kind == ScheduleKind.Cosine)
            // alpha_bar_t = f(t+1) / f(0) for the cosine schedule wherever no beta was clipped (Nichol & Dhariwal,
            // eq. 17)
            for (int t = 0; t < 390; t += 13)
                Assert.Equal(
                    NoiseSchedule.CosineAlphaBar((t + 1) / 400.0) / NoiseSchedule.CosineAlphaBar(0),
                    schedule.AlphaBars[t],
                    9
                );
        else
            Assert.Equal(0.02, schedule.Betas[^1] * 400 / 1000, 12);
    }

    [Theory]
    [InlineData(Prediction.Epsilon)]
    [InlineData(Prediction.V)]
    public void Estimates_invert_the_noising_for_either_prediction(Prediction kind)
    {
        // Given the true target, the estimates must give back exactly the x0 and noise that made x_t.
        var schedule = new NoiseSchedule(ScheduleKind.Cosine, 100);
        torch.manual_seed(1);
        using var x0 = rand(8, 1, 4, 4, dtype: ScalarType.Float64) * 2 - 1;
        using var noise = randn(8, 1, 4, 4, dtype: ScalarType.Float64);
        int t = 60;
        using var ts = full(8, t, dtype: ScalarType.Int64);
        using var xt = schedule.AddNoise(x0, ts, noise);
        using var target = schedule.Target(kind, x0, ts, noise);
        var (eps, x0Hat) = schedule.Estimates(kind, xt, target, t, clip: false);
        Assert.True(x0Hat.allclose(x0, 1e-9, 1e-9));
        Assert.True(eps.allclose(noise, 1e-9, 1e-9));
    }

    /// <summary>
    /// The exact denoiser of a 1-D Gaussian mixture sum_k pi_k N(mu_k, s_k^2): x_t = a x0 + sigma z has, under
    /// component k, the marginal N(a mu_k, a^2 s_k^2 + sigma^2), and E[x0 | x_t, k] = mu_k + a s_k^2 / (a^2 s_k^2 +
    /// sigma^2) (x_t - a mu_k); the posterior mean mixes them by responsibility. Returned as an epsilon prediction.
    /// </summary>
    private static Denoiser MixtureDenoiser(NoiseSchedule schedule, (double Pi, double Mu, double S)[] parts) =>
        (x, t) =>
        {
            using var scope = NewDisposeScope();
            double a = schedule.Alpha(t),
                sigma = schedule.Sigma(t);
            Tensor? weighted = null,
                total = null;
            foreach (var (pi, mu, s) in parts)
            {
                double v = a * a * s * s + sigma * sigma;
                var density = pi / Math.Sqrt(v) * exp(-(x - a * mu).pow(2) / (2 * v));
                var mean = mu + a * s * s / v * (x - a * mu);
                weighted = weighted is null ? density * mean : weighted + density * mean;
                total = total is null ? density : total + density;
            }
            var x0 = weighted! / total!;
            return ((x - a * x0) / sigma).MoveToOuterDisposeScope();
        };

    [Fact]
    public void Ddim_with_every_step_and_eta_1_is_the_ancestral_sampler_and_both_sample_the_data()
    {
        var schedule = new NoiseSchedule(ScheduleKind.Linear, 200);
        var parts = new[] { (0.3, -0.6, 0.1), (0.7, 0.5, 0.2) };
        var denoiser = MixtureDenoiser(schedule, parts);
        const int n = 20_000;
        using var xT = randn(n, dtype: ScalarType.Float64, generator: new Generator(3));
        Tensor Run(SamplerOptions o) =>
            DiffusionSampler.Sample(schedule, Prediction.Epsilon, denoiser, xT, o, new Generator(11));
        using var ancestral = Run(new SamplerOptions(SamplerKind.Ancestral, 200, Clip: false));
        using var ddim = Run(new SamplerOptions(SamplerKind.Ddim, 200, Eta: 1, Clip: false));
        // The same noise stream: the two samplers are one algorithm (Song et al. section 4.1), up to rounding.
        Assert.True(
            ddim.allclose(ancestral, 1e-7, 1e-7),
            $"max difference {(ddim - ancestral).abs().max().item<double>()}"
        );
        // In distribution: the data's mean, variance and mode weights, to Monte-Carlo accuracy.
        double mean = parts.Sum(p => p.Item1 * p.Item2);
        double variance = parts.Sum(p => p.Item1 * (p.Item3 * p.Item3 + p.Item2 * p.Item2)) - mean * mean;
        Assert.InRange(ancestral.mean().item<double>(), mean - 0.02, mean + 0.02);
        Assert.InRange(ancestral.var().item<double>(), variance * 0.95, variance * 1.05);
        double right = ancestral.gt(0).to(ScalarType.Float64).mean().item<double>();
        Assert.InRange(right, 0.68, 0.72);
    }

    [Fact]
    public void Dpm_solver_2m_is_closer_to_the_exact_flow_than_ddim_at_equal_evaluations()
    {
        // Gaussian data N(mu, s^2): the probability-flow ODE maps x_T to mu + s (x_T - a_T mu) / sqrt(a_T^2 s^2 +
        // sigma_T^2) exactly, whatever the path. Both deterministic samplers approximate that map. On the same grid of
        // every step the second-order solver's error is a small fraction of DDIM's (first order); at 10 and 20
        // evaluations, each on its default spacing, it is at least 5x smaller, and within 5% of s at 20.
        var schedule = new NoiseSchedule(ScheduleKind.Linear, 1000);
        const double mu = 0.3,
            s = 0.15;
        var denoiser = MixtureDenoiser(schedule, [(1.0, mu, s)]);
        using var xT = linspace(-3, 3, 61, dtype: ScalarType.Float64);
        int last = schedule.Steps - 1;
        double aT = schedule.Alpha(last),
            sT = schedule.Sigma(last);
        using var exact = mu + s * (xT - aT * mu) / Math.Sqrt(aT * aT * s * s + sT * sT);
        double Error(SamplerKind kind, int steps, TimeSpacing? spacing = null)
        {
            using var x = DiffusionSampler.Sample(
                schedule,
                Prediction.Epsilon,
                denoiser,
                xT,
                new SamplerOptions(kind, steps, Clip: false, Spacing: spacing)
            );
            return (x - exact).abs().max().item<double>();
        }
        double ddimAll = Error(SamplerKind.Ddim, 1000),
            dpmAll = Error(SamplerKind.DpmSolver2M, 1000, TimeSpacing.Uniform);
        Assert.True(dpmAll < ddimAll / 5, $"every step: DPM-Solver++(2M) {dpmAll}, DDIM {ddimAll}");
        foreach (int steps in new[] { 10, 20 })
        {
            double ddim = Error(SamplerKind.Ddim, steps),
                dpm = Error(SamplerKind.DpmSolver2M, steps);
            Assert.True(dpm < ddim / 5, $"{steps} steps: DPM-Solver++(2M) error {dpm}, DDIM {ddim}");
            if (steps == 20)
                Assert.True(dpm < 0.05 * s, $"DPM-Solver++(2M) error {dpm} at 20 steps");
        }
    }

    [Fact]
    public void Time_grid_spans_both_ends_and_is_complete_at_full_length()
    {
        Assert.Equal(Enumerable.Range(0, 50).Reverse(), DiffusionSampler.TimeGrid(50, 50));
        Assert.Equal(new[] { 999, 888, 777, 666, 555, 444, 333, 222, 111, 0 }, DiffusionSampler.TimeGrid(1000, 10));
        Assert.Equal(new[] { 99 }, DiffusionSampler.TimeGrid(100, 1));
        // log-SNR spacing: strictly decreasing from T-1 to 0, denser at low noise than the uniform grid
        var schedule = new NoiseSchedule(ScheduleKind.Cosine, 1000);
        var log = DiffusionSampler.TimeGrid(schedule, 25, TimeSpacing.LogSnr);
        Assert.Equal(999, log[0]);
        Assert.Equal(0, log[^1]);
        Assert.True(log.Zip(log.Skip(1)).All(p => p.First > p.Second));
        Assert.True(log.Count(t => t < 200) > DiffusionSampler.TimeGrid(1000, 25).Count(t => t < 200));
        Assert.Throws<ArgumentOutOfRangeException>(() => DiffusionSampler.TimeGrid(100, 101));
        // a lower first step: the same shapes of grid, from there
        Assert.Equal(
            new[] { 900, 800, 700, 600, 500, 400, 300, 200, 100, 0 },
            DiffusionSampler.TimeGrid(1000, 10, 900)
        );
        var lower = DiffusionSampler.TimeGrid(schedule, 25, TimeSpacing.LogSnr, first: 900);
        Assert.Equal(900, lower[0]);
        Assert.Equal(0, lower[^1]);
        Assert.True(lower.Zip(lower.Skip(1)).All(p => p.First > p.Second));
        Assert.Throws<ArgumentOutOfRangeException>(() => DiffusionSampler.TimeGrid(1000, 10, 1000));
        Assert.Throws<ArgumentOutOfRangeException>(() => DiffusionSampler.TimeGrid(1000, 10, 5));
    }

    [Fact]
    public void Unet_keeps_the_shape_starts_at_zero_output_and_counts_its_parameters()
    {
        // The reference size: 32 base channels, 1-2-2, two residual blocks per level, no attention.
        var spec = new UNetSpec(1, 28, 28, 10, 32, [1, 2, 2], 2, [], 0.1);
        using var net = new UNet(spec);
        torch.manual_seed(0);
        using var x = randn(3, 1, 28, 28);
        using var t = tensor(new long[] { 0, 500, 999 });
        using var y = tensor(new long[] { 0, 9, 10 }); // 10 = no label
        using var out0 = net.call(x, t, y);
        Assert.Equal(x.shape, out0.shape);
        Assert.Equal(0, out0.abs().max().item<float>()); // the output convolution starts at zero
        // Parameters by hand: the count of the layers this spec asks for (see UNet's constructor), computed apart.
        long expected = ExpectedParameters(spec);
        Assert.Equal(expected, net.ParameterCount());
        // with attention at 14 pixels the same network has attention blocks at that level (and more parameters)
        using var withAttention = new UNet(spec with { AttentionResolutions = [14] });
        using var out1 = withAttention.call(x, t, y);
        Assert.Equal(x.shape, out1.shape);
        Assert.True(withAttention.ParameterCount() > expected);
        Assert.Throws<ArgumentException>(() => new UNet(spec with { ChannelMults = [1, 2, 2, 2] })); // 28 / 8
    }

    private static long ExpectedParameters(UNetSpec s)
    {
        long Conv(int i, int o, int k) => (long)i * o * k * k + o;
        long Norm(int c) => 2L * c;
        int emb = 4 * s.BaseChannels;
        long Res(int i, int o) =>
            Norm(i) + Conv(i, o, 3) + (long)emb * o + o + Norm(o) + Conv(o, o, 3) + (i == o ? 0 : Conv(i, o, 1));
        long total = (long)s.BaseChannels * emb + emb + (long)emb * emb + emb + (long)(s.NumClasses + 1) * emb;
        total += Conv(s.Channels, s.BaseChannels, 3);
        var skips = new Stack<int>();
        skips.Push(s.BaseChannels);
        int ch = s.BaseChannels;
        for (int l = 0; l < s.Mults.Length; l++)
        {
            for (int r = 0; r < s.ResBlocks; r++)
            {
                total += Res(ch, s.BaseChannels * s.Mults[l]);
                ch = s.BaseChannels * s.Mults[l];
                skips.Push(ch);
            }
            if (l < s.Mults.Length - 1)
            {
                total += Conv(ch, ch, 3);
                skips.Push(ch);
            }
        }
        total += 2 * Res(ch, ch) + Norm(ch) + Conv(ch, 3 * ch, 1) + Conv(ch, ch, 1);
        for (int l = s.Mults.Length - 1; l >= 0; l--)
        {
            for (int r = 0; r <= s.ResBlocks; r++)
            {
                total += Res(ch + skips.Pop(), s.BaseChannels * s.Mults[l]);
                ch = s.BaseChannels * s.Mults[l];
            }
            if (l > 0)
                total += Conv(ch, ch, 3);
        }
        return total + Norm(ch) + Conv(ch, s.Channels, 3);
    }

    [Fact]
    public void A_tiny_ddpm_overfit_on_four_images_samples_them_back_by_label()
    {
        // Four Fashion-MNIST images of four classes; a small conditional UNet trained on them alone must, sampled with
        // DDIM, return for each label an image closer to that label's training image than to any other. The images
        // are averaged down to 14x14 (2x2 blocks), which trains 2.8x faster per step than 28x28, and the learning
        // rate decays to zero over the second half: at 28x28 with a constant rate, 1,000 steps left the worst sample
        // at MSE 0.0065 on one machine and 0.0147 on another whose libtorch ran other kernels (the old bound was 0.01);
        // at 14x14 with the decay it is 0.0007 on both (0.0023 after 600 steps).
        using var train = TestSupport.FashionMnist(Split.Train);
        var picks = new List<int>();
        foreach (int c in new[] { 0, 1, 7, 8 })
            picks.Add(Enumerable.Range(0, train.Count).First(i => train.Labels[i] == c));
        using var subset = train.Select(picks);
        var (full, _) = BatchSampler.All(subset, CPU);
        using var images = nn.functional.avg_pool2d(full, 2);
        using var labels = tensor(new long[] { 0, 1, 2, 3 });
        torch.manual_seed(0);
        var spec = new DdpmSpec(
            new UNetSpec(1, 14, 14, 4, 16, [1, 2], 1, [], 0),
            ScheduleKind.Cosine,
            200,
            Prediction.Epsilon,
            LabelDropout: 0
        );
        using var ddpm = new Ddpm(spec);
        const int steps = 1000;
        const double rate = 2e-3;
        var optimizer = torch.optim.Adam(ddpm.Net.parameters(), rate);
        using var g = new Generator(5);
        var batchImages = images.repeat(8, 1, 1, 1);
        var batchLabels = labels.repeat(8);
        for (int step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            foreach (var group in optimizer.ParamGroups)
                group.LearningRate = rate * Math.Min(1.0, 2.0 * (steps - step) / steps);
            optimizer.zero_grad();
            var loss = ddpm.Loss(batchImages, batchLabels, g);
            loss.backward();
            optimizer.step();
        }
        using var samples = ddpm.Sample(
            labels.repeat(2),
            new SamplerOptions(SamplerKind.Ddim, 25),
            generator: new Generator(9)
        );
        using var distances = torch.cdist(samples.flatten(1), images.flatten(1)); // [8, 4]
        var nearest = distances.argmin(1).data<long>().ToArray();
        Assert.Equal(new long[] { 0, 1, 2, 3, 0, 1, 2, 3 }, nearest);
        // and close to it: mean squared error per pixel below 0.005 (a pixel value off by 0.07 on average)
        using var ownDistance = distances.gather(1, labels.repeat(2).view(-1, 1));
        double mse = ownDistance.pow(2).max().item<float>() / (14 * 14);
        Assert.True(mse < 0.005, $"worst per-pixel MSE {mse}");
    }
}

public sealed class GeneratorTrainingTests
{
    public GeneratorTrainingTests() => TestSupport.InitTorch();

    [Fact]
    public void Adam_matches_torch_optim_adam_step_for_step()
    {
        // Our Adam (whose moments go into checkpoints) against libtorch's own on the same parameters and gradients.
        torch.manual_seed(2);
        using var a = nn.Linear(7, 3);
        using var b = nn.Linear(7, 3);
        b.load_state_dict(a.state_dict());
        using var ours = new Adam(a);
        var reference = torch.optim.Adam(b.parameters(), 0.01);
        using var x = randn(16, 7);
        for (int i = 0; i < 25; i++)
        {
            a.zero_grad();
            a.call(x).pow(2).mean().backward();
            ours.Step(0.01);
            reference.zero_grad();
            b.call(x).pow(2).mean().backward();
            reference.step();
        }
        Assert.True(a.weight!.allclose(b.weight!, 1e-6, 1e-7));
        Assert.True(a.bias!.allclose(b.bias!, 1e-6, 1e-7));
    }

    private static DdpmSpec TinySpec =>
        new(new UNetSpec(1, 28, 28, 10, 8, [1, 2], 1, [], 0.1), ScheduleKind.Cosine, 100, Prediction.V, 0.2);

    [Fact]
    public void Ddpm_training_killed_and_resumed_ends_with_the_same_weights()
    {
        using var train = TestSupport.FashionMnist(Split.Train);
        using var data = train.Split(64, 1).Taken;
        var options = new DdpmTrainOptions
        {
            Steps = 12,
            BatchSize = 16,
            WarmupSteps = 4,
            CheckpointEverySteps = 5,
            GridEverySteps = 0,
        };
        using var dir = new TempDir();
        using (DdpmTraining.Run(TinySpec, options, data, dir.File("whole"), resume: false)) { }
        using var cancel = new CancellationTokenSource();
        var progress = new Core.Reporter<GeneratorProgress>(_ => { });
        int grids = 0;
        // cancelled from the grid callback after step 7 (a checkpoint at 5 exists; the cancel saves step 7)
        Assert.Throws<OperationCanceledException>(() =>
            DdpmTraining.Run(
                TinySpec,
                options with
                {
                    GridEverySteps = 7,
                },
                data,
                dir.File("killed"),
                resume: false,
                progress,
                (_, _) =>
                {
                    grids++;
                    cancel.Cancel();
                },
                cancel.Token
            )
        );
        Assert.Equal(1, grids);
        using (DdpmTraining.Run(TinySpec, options, data, dir.File("killed"), resume: true)) { }
        var (_, whole) = GeneratorCheckpoint.Read(Path.Combine(dir.File("whole"), "final"));
        var (run, resumed) = GeneratorCheckpoint.Read(Path.Combine(dir.File("killed"), "final"));
        Assert.Equal(12, run["step"]!.GetValue<long>());
        foreach (var (name, t) in whole)
            Assert.True(t.allclose(resumed[name], 1e-5, 1e-6), $"{name} differs after resume");
        // the checkpoint loads back for sampling, and the sampler keeps images in [0,1]
        using var ddpm = DdpmTraining.Load(dir.File("killed"));
        using var images = ddpm.Sample(
            arange(3, dtype: ScalarType.Int64),
            new SamplerOptions(SamplerKind.DpmSolver2M, 5)
        );
        Assert.Equal(new long[] { 3, 1, 28, 28 }, images.shape);
        Assert.InRange(images.min().item<float>(), 0, 1);
        Assert.InRange(images.max().item<float>(), 0, 1);
    }

    [Fact]
    public void A_corrupt_generator_checkpoint_is_one_clear_error_naming_the_file()
    {
        using var train = TestSupport.FashionMnist(Split.Train);
        using var data = train.Split(32, 1).Taken;
        using var dir = new TempDir();
        var options = new DdpmTrainOptions
        {
            Steps = 2,
            BatchSize = 16,
            GridEverySteps = 0,
        };
        using (DdpmTraining.Run(TinySpec, options, data, dir.Path, resume: false)) { }
        var weights = Path.Combine(dir.Path, "final.safetensors");
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        var e = Assert.Throws<DataFormatException>(() => DdpmTraining.Load(dir.Path));
        Assert.Contains("final.safetensors", e.Message);
        File.WriteAllText(Path.Combine(dir.Path, "final.json"), "{\"format\": \"something else\"}");
        e = Assert.Throws<DataFormatException>(() => DdpmTraining.Load(dir.Path));
        Assert.Contains("final.json", e.Message);
    }
}

public sealed class GanTests
{
    public GanTests() => TestSupport.InitTorch();

    [Fact]
    public void Spectral_norm_estimates_the_largest_singular_value_and_normalises_to_one()
    {
        // Power iteration (Miyato et al. Algorithm 1) against the singular values computed by libtorch's SVD.
        torch.manual_seed(3);
        using var conv = new SpectralNormConv2d(3, 8, 3, 1, 1);
        using var x = randn(2, 3, 5, 5);
        conv.train();
        for (int i = 0; i < 60; i++)
            conv.call(x).Dispose();
        var weight = conv.parameters().First(p => p.dim() == 4);
        double largest = torch.linalg.svdvals(weight.detach().view(8, -1))[0].item<float>();
        Assert.Equal(largest, conv.Sigma, largest * 1e-3);
        using var linear = new SpectralNormLinear(20, 6);
        using var v = randn(4, 20);
        for (int i = 0; i < 60; i++)
            linear.call(v).Dispose();
        var w = linear.parameters().First(p => p.dim() == 2).detach();
        double s = torch.linalg.svdvals(w)[0].item<float>();
        Assert.Equal(s, linear.Sigma, s * 1e-3);
        // the layer computes x W^T / sigma: its Lipschitz constant is 1
        using (no_grad())
            Assert.True(
                (linear.call(v) - nn.functional.linear(v, w / s, linear.parameters().Last())).abs().max().item<float>()
                    < 1e-4
            );
    }

    [Fact]
    public void Gan_training_killed_and_resumed_ends_with_the_same_weights_and_samples_in_the_box()
    {
        using var train = TestSupport.FashionMnist(Split.Train);
        using var data = train.Split(64, 1).Taken;
        var spec = new GanSpec(1, 28, 28, 10, 16, 8);
        var options = new GanTrainOptions
        {
            Steps = 10,
            BatchSize = 16,
            CheckpointEverySteps = 4,
            GridEverySteps = 0,
            DiscriminatorSteps = 2,
        };
        using var dir = new TempDir();
        using (GanTraining.Run(spec, options, data, dir.File("whole"), resume: false)) { }
        using var cancel = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() =>
            GanTraining.Run(
                spec,
                options with
                {
                    GridEverySteps = 6,
                },
                data,
                dir.File("killed"),
                false,
                null,
                (_, _) => cancel.Cancel(),
                cancel.Token
            )
        );
        using (GanTraining.Run(spec, options, data, dir.File("killed"), resume: true)) { }
        var (_, whole) = GeneratorCheckpoint.Read(Path.Combine(dir.File("whole"), "final"));
        var (run, resumed) = GeneratorCheckpoint.Read(Path.Combine(dir.File("killed"), "final"));
        Assert.Equal(10, run["step"]!.GetValue<long>());
        foreach (var (name, t) in whole)
            Assert.True(t.allclose(resumed[name], 1e-5, 1e-6), $"{name} differs after resume");
        using var gan = GanTraining.Load(dir.File("killed"));
        using var images = gan.Sample(arange(4, dtype: ScalarType.Int64), new torch.Generator(1));
        Assert.Equal(new long[] { 4, 1, 28, 28 }, images.shape);
        Assert.InRange(images.min().item<float>(), 0, 1);
        Assert.InRange(images.max().item<float>(), 0, 1);
        // eval-mode batch norm: a sample does not depend on the rest of its batch
        using var first = gan.Sample(arange(1, dtype: ScalarType.Int64), new torch.Generator(1));
        Assert.True(first.allclose(images.narrow(0, 0, 1), 1e-5, 1e-6));
    }

    [Fact]
    public void Mode_seeking_term_is_lambda_over_the_image_to_latent_gap_ratio_of_two_halves()
    {
        // recomputed by hand from the same draws: halves share labels, the term is added to the hinge loss
        var spec = new GanSpec(1, 28, 28, 10, 8, 8);
        torch.manual_seed(3);
        using var g = new GanGenerator(spec);
        using var d = new ProjectionDiscriminator(spec);
        g.eval();
        d.eval();
        using var scope = NewDisposeScope();
        var labels = tensor(new long[] { 1, 4, 7, 2, 9, 0 });
        var loss0 = GanTraining.GeneratorLoss(g, d, labels, 8, 0, new torch.Generator(5));
        var z = randn([6, 8], generator: new torch.Generator(5));
        var expected0 = -d.call(g.call(z, labels), labels).mean();
        Assert.Equal(expected0.item<float>(), loss0.item<float>(), 1e-5);

        var loss = GanTraining.GeneratorLoss(g, d, labels, 8, 2.5, new torch.Generator(5));
        var pairLabels = tensor(new long[] { 1, 4, 7, 1, 4, 7 });
        var images = g.call(z, pairLabels);
        double imageGap = (images.narrow(0, 0, 3) - images.narrow(0, 3, 3)).abs().mean().item<float>();
        double latentGap = (z.narrow(0, 0, 3) - z.narrow(0, 3, 3)).abs().mean().item<float>();
        double adversarial = -d.call(images, pairLabels).mean().item<float>();
        Assert.Equal(adversarial + 2.5 / (imageGap / latentGap + 1e-5), loss.item<float>(), 1e-3);
        Assert.True(loss.item<float>() > adversarial, "the term is positive");
    }
}
