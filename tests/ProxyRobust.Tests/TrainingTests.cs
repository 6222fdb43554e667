using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class TrainingTests
{
    public TrainingTests() => TestSupport.InitTorch();

    [Fact]
    public void Cosine_schedule_matches_its_closed_form()
    {
        var s = new CosineSchedule(0.1, TotalSteps: 110, WarmupSteps: 10);
        Assert.Equal(0.01, s.At(0), 12);
        Assert.Equal(0.1, s.At(9), 12);
        Assert.Equal(0.1, s.At(10), 12);
        Assert.Equal(0.05, s.At(60), 12);
        Assert.Equal(0.1 * (1 + Math.Cos(Math.PI * 0.25)) / 2, s.At(35), 12);
        Assert.Equal(0.0, s.At(110), 12);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sgd_matches_torch_optim_sgd(bool nesterov)
    {
        torch.manual_seed(3);
        var spec = ArchSpec.For("small-cnn", 1, 8, 8, 3);
        using var ours = spec.Create();
        using var theirs = spec.Create();
        theirs.load_state_dict(ours.state_dict());
        using var sgd = new Sgd(ours, 0.9, 5e-4, nesterov);
        using var reference = torch.optim.SGD(
            theirs.parameters(),
            0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: nesterov
        );
        for (int step = 0; step < 5; step++)
        {
            using var x = rand(6, 1, 8, 8);
            using var y = tensor(new long[] { 0, 1, 2, 0, 1, 2 });
            foreach (
                var (model, update) in new (Classifier, Action)[]
                {
                    (ours, () => sgd.Step(0.05)),
                    (theirs, () => reference.step()),
                }
            )
            {
                model.zero_grad();
                using var loss = nn.functional.cross_entropy(model.forward(x), y);
                loss.backward();
                update();
            }
        }
        foreach (var ((name, a), (_, b)) in ours.named_parameters().Zip(theirs.named_parameters()))
            Assert.True(a.allclose(b, rtol: 1e-5, atol: 1e-7), name);
    }

    [Fact]
    public void Ema_follows_its_recurrence()
    {
        torch.manual_seed(4);
        var spec = ArchSpec.For("small-cnn", 1, 8, 8, 3);
        using var model = spec.Create();
        using var avg = spec.Create();
        avg.load_state_dict(model.state_dict());
        var ema = new WeightAverage(model, avg, 0.9);
        var p = model.parameters().First();
        var start = p.detach().clone();
        using (no_grad())
            p.add_(1.0);
        ema.Update();
        ema.Update();
        // two updates towards start+1 from start: start + 1 - 0.9^2
        Assert.True(avg.parameters().First().allclose(start + (1 - 0.81), atol: 1e-6));
    }

    [Fact]
    public void Port_mixing_weighs_each_part_as_the_paper_says()
    {
        using var scope = NewDisposeScope();
        var (x, y, w) = PortMixing.Mix(
            zeros(4, 1, 2, 2),
            zeros(4, int64),
            ones(2, 1, 2, 2),
            ones(2, int64),
            gamma: 0.3
        );
        Assert.Equal([6L, 1, 2, 2], x.shape);
        Assert.Equal([0L, 0, 0, 0, 1, 1], y.data<long>().ToArray());
        var weights = w.data<float>().ToArray();
        foreach (var real in weights[..4])
            Assert.Equal(0.7 / 4, real, 6);
        foreach (var synthetic in weights[4..])
            Assert.Equal(0.3 / 2, synthetic, 6);
        Assert.Equal(1.0, weights.Sum(), 6);
        var (_, _, plain) = PortMixing.Mix(zeros(5, 1, 2, 2), zeros(5, int64), null, null, gamma: 0.5);
        Assert.All(plain.data<float>().ToArray(), v => Assert.Equal(0.2, v, 6));
    }

    /// <summary>gamma 0 trains on the real part alone and gamma 1 on the synthetic part alone (loss and weight
    /// gradient).</summary>
    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    public void Port_mixing_at_gamma_0_or_1_equals_training_on_one_part(double gamma)
    {
        torch.manual_seed(5);
        var spec = ArchSpec.For("small-cnn", 1, 8, 8, 3); // no BatchNorm: the two parts do not interact
        using var model = spec.Create();
        using var scope = NewDisposeScope();
        var (xr, yr) = (rand(6, 1, 8, 8), tensor(new long[] { 0, 1, 2, 0, 1, 2 }));
        var (xs, ys) = (rand(4, 1, 8, 8), tensor(new long[] { 2, 2, 1, 0 }));
        var objective = new CrossEntropyObjective();

        (float Loss, float[] Grad) LossAndGradient(Tensor x, Tensor y, Tensor w)
        {
            model.zero_grad();
            var (loss, _) = objective.Loss(model, x, y, w);
            loss.backward();
            return (loss.item<float>(), model.parameters().First().grad!.flatten().data<float>().ToArray());
        }

        var (xm, ym, wm) = PortMixing.Mix(xr, yr, xs, ys, gamma);
        var mixed = LossAndGradient(xm, ym, wm);
        var (xo, yo) = gamma == 0 ? (xr, yr) : (xs, ys);
        var one = LossAndGradient(xo, yo, full(xo.shape[0], 1.0 / xo.shape[0]));
        Assert.Equal(one.Loss, mixed.Loss, 5);
        for (int i = 0; i < one.Grad.Length; i++)
            Assert.Equal(one.Grad[i], mixed.Grad[i], 5);
    }

    /// <summary>TRADES' loss against its definition, computed in double precision from the softmax by hand.</summary>
    [Fact]
    public void Trades_loss_matches_its_definition()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(6);
        var natural = randn(5, 4) * 2;
        var adversarial = natural + randn(5, 4);
        var labels = tensor(new long[] { 0, 3, 1, 2, 3 });
        var weights = tensor(new float[] { 0.1f, 0.2f, 0.3f, 0.15f, 0.25f });
        const double beta = 6;
        double expected = 0;
        var zn = natural.to(float64).data<double>().ToArray();
        var za = adversarial.to(float64).data<double>().ToArray();
        double[] Softmax(double[] z, int row)
        {
            var e = Enumerable.Range(0, 4).Select(k => Math.Exp(z[row * 4 + k])).ToArray();
            return e.Select(v => v / e.Sum()).ToArray();
        }
        for (int i = 0; i < 5; i++)
        {
            var p = Softmax(zn, i);
            var q = Softmax(za, i);
            double ce = -Math.Log(p[labels[i].item<long>()]);
            double kl = Enumerable.Range(0, 4).Sum(k => p[k] * Math.Log(p[k] / q[k]));
            expected += weights[i].item<float>() * (ce + beta * kl);
        }
        var loss = TradesObjective.LossAt(natural, adversarial, labels, weights, beta).item<float>();
        Assert.Equal(expected, loss, 4);
        // beta = 0 leaves the weighted cross-entropy at the natural points
        var ceOnly = TradesObjective.LossAt(natural, adversarial, labels, weights, 0).item<float>();
        var weightedCe = (nn.functional.cross_entropy(natural, labels, reduction: nn.Reduction.None) * weights)
            .sum()
            .item<float>();
        Assert.Equal(weightedCe, ceOnly, 5);
    }
}
