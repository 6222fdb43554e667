using ProxyRobust.Attacks;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class AttackTests
{
    public AttackTests() => TestSupport.InitTorch();

    /// <summary>A two-class linear model on 1x8x8 images: logit_0 = 0, logit_1 = w.x + b, so the margin of class 1 is
    /// w.x + b.</summary>
    private static (Classifier Model, Tensor W) Linear(int seed)
    {
        torch.manual_seed(seed);
        var spec = ArchSpec.For("small-cnn", 1, 8, 8, 2);
        var lin = nn.Linear(64, 2);
        var w = randn(64);
        using (no_grad())
        {
            lin.weight!.zero_();
            lin.weight![1].copy_(w);
            lin.bias!.zero_();
            lin.bias![1].fill_(0.3);
        }
        var body = nn.Sequential(("flatten", nn.Flatten()), ("fc", lin));
        return (new Classifier(spec, body), w);
    }

    [Theory]
    [InlineData(Norm.Linf, 0.05)]
    [InlineData(Norm.L2, 0.5)]
    public void Pgd_reaches_the_closed_form_worst_case_of_a_linear_model(Norm norm, double eps)
    {
        var (model, w) = Linear(1);
        using var x = full(4, 1, 8, 8, 0.5f);
        using var y = ones(4, dtype: ScalarType.Int64);
        var pgd = new Pgd(
            new ThreatModel(norm, eps),
            Steps: 20,
            StepSize: eps / 4,
            RandomStart: false,
            KeepFirstSuccess: false
        );
        using var adv = pgd.Perturb(model, x, y);
        double margin0 = (w.sum() * 0.5 + 0.3).item<float>();
        // The worst case lowers the margin by eps times the dual norm of w: ||w||_1 for l-inf, ||w||_2 for l-2.
        double drop = eps * (norm == Norm.Linf ? w.abs().sum().item<float>() : w.norm().item<float>());
        using var logits = model.call(adv);
        var achieved = (logits[.., 1] - logits[.., 0]).data<float>().ToArray();
        foreach (var m in achieved)
            Assert.InRange(margin0 - m, 0.99 * drop, 1.0001 * drop);
    }

    private static (Tensor X, Tensor Y) Batch(ImageDataset data, int n)
    {
        var sampler = new BatchSampler(data, n, false, AugmentOptions.None, 0);
        var b = sampler.Epoch(0).First();
        return b.ToTensors(CPU);
    }

    [Theory]
    [InlineData(Norm.Linf, 0.1)]
    [InlineData(Norm.L2, 1.5)]
    public void Every_adversarial_example_is_inside_the_ball_and_the_box(Norm norm, double eps)
    {
        using var model = TestSupport.BrieflyTrained(out var data);
        var (x, y) = Batch(data, 128);
        var threat = new ThreatModel(norm, eps);
        IAttack[] attacks =
        [
            new Pgd(threat, 10, eps / 4, Restarts: 2),
            new Pgd(threat, 7, eps, Loss: AttackLoss.Margin, KeepFirstSuccess: false),
            new Fgsm(threat),
            new Fgsm(threat, RandomStart: true),
        ];
        foreach (var attack in attacks)
        {
            using var adv = attack.Perturb(model, x, y);
            Assert.Equal(x.shape, adv.shape);
            double worst = threat.NormOf(adv - x).max().item<float>();
            Assert.True(worst <= eps * (1 + 1e-5), $"{attack.Name}: norm {worst} > {eps}");
            Assert.True(adv.min().item<float>() >= 0 && adv.max().item<float>() <= 1, attack.Name);
            Assert.True(worst > 0.5 * eps, $"{attack.Name} did not move (norm {worst})");
        }
    }

    [Fact]
    public void More_steps_or_restarts_never_find_fewer_adversarial_examples()
    {
        using var model = TestSupport.BrieflyTrained(out var data);
        var (x, y) = Batch(data, 300);
        var threat = new ThreatModel(Norm.Linf, 0.05);
        bool[] Fooled(Pgd a)
        {
            using var adv = a.Perturb(model, x, y);
            return model.call(adv).argmax(1).ne(y).data<bool>().ToArray();
        }
        var weak = Fooled(new Pgd(threat, 3, 0.0125, Restarts: 1, Seed: 9));
        var moreSteps = Fooled(new Pgd(threat, 12, 0.0125, Restarts: 1, Seed: 9));
        var moreRestarts = Fooled(new Pgd(threat, 3, 0.0125, Restarts: 4, Seed: 9));
        for (int i = 0; i < weak.Length; i++)
        {
            Assert.True(!weak[i] || moreSteps[i], $"point {i}: found by 3 steps, not by 12");
            Assert.True(!weak[i] || moreRestarts[i], $"point {i}: found by 1 restart, not by 4");
        }
        Assert.True(moreSteps.Count(f => f) > weak.Count(f => f), "12 steps should strictly beat 3 here");
        Assert.InRange(weak.Count(f => f), 1, weak.Length - 1); // the comparison is not vacuous
    }

    [Fact]
    public void Targeted_pgd_reaches_its_targets()
    {
        using var model = TestSupport.BrieflyTrained(out var data);
        var (x, y) = Batch(data, 200);
        var threat = new ThreatModel(Norm.Linf, 0.3);
        using var clean = model.call(x);
        using var leastLikely = clean.argmin(1);
        using var adv = new Pgd(threat, 40, 0.03, Loss: AttackLoss.Margin)
        {
            Targets = TargetChoice.LeastLikely,
        }.Perturb(model, x, y);
        var pred = model.call(adv).argmax(1);
        // Most points land exactly on their least likely class (chance would be 1 in 10). This briefly trained model is
        // smooth: at eps 0.15 only 9 of 200 get there, at 0.3 most do.
        Assert.True(
            pred.eq(leastLikely).sum().item<long>() > 100,
            $"{pred.eq(leastLikely).sum().item<long>()} of 200 reached the target"
        );
        // Random targets: the attack stays inside the ball.
        var rnd = new Pgd(threat, 1, 0.02) { Targets = TargetChoice.Random };
        using var advRandom = rnd.Perturb(model, x, y);
        Assert.True(threat.NormOf(advRandom - x).max().item<float>() <= 0.3 + 1e-6);
    }

    [Fact]
    public void Chunking_the_attack_changes_nothing_but_speed()
    {
        using var model = TestSupport.BrieflyTrained(out var data);
        var (x, y) = Batch(data, 100);
        var pgd = new Pgd(new ThreatModel(Norm.L2, 1.0), 5, 0.25, RandomStart: false);
        using var whole = pgd.Perturb(model, x, y);
        using var chunked = (pgd with { Chunk = 32 }).Perturb(model, x, y);
        Assert.True(whole.allclose(chunked, rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void Attacks_compute_no_weight_gradients_and_restore_the_model()
    {
        using var model = TestSupport.BrieflyTrained(out var data);
        model.train();
        model.zero_grad();
        foreach (var p in model.parameters())
            Assert.True(p.grad is null || p.grad.abs().sum().item<float>() == 0);
        var (x, y) = Batch(data, 16);
        using var adv = new Pgd(new ThreatModel(Norm.Linf, 0.1), 5, 0.025).Perturb(model, x, y);
        Assert.True(model.training);
        foreach (var p in model.parameters())
        {
            Assert.True(p.requires_grad);
            Assert.True(
                p.grad is null || p.grad.abs().sum().item<float>() == 0,
                "an attack step accumulated a weight gradient"
            );
        }
    }

    [Fact]
    public void Robust_evaluation_counts_match_a_direct_recount()
    {
        using var model = TestSupport.BrieflyTrained(out var data);
        var attack = new Pgd(new ThreatModel(Norm.Linf, 0.05), 5, 0.0125);
        var r = RobustEvaluation.Evaluate(model, data, attack, 64, CPU, seed: 3, keepAdversarial: true);
        Assert.Equal(300, r.Clean.Total);
        Assert.True(r.Robust!.Correct <= r.Clean.Correct);
        // Recount from the saved adversarial examples, independently of the evaluator's bookkeeping.
        using var adv = tensor(r.Adversarial!, [300, 28, 28, 1]).permute(0, 3, 1, 2);
        using var y = tensor(data.Labels.Select(l => (long)l).ToArray());
        Assert.Equal(r.Robust.Correct, model.call(adv).argmax(1).eq(y).sum().item<long>());
        Assert.Equal(r.Robust.Correct, r.Robust.CorrectPerClass.Sum());
    }
}
