using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// Fast Adaptive Boundary attack (Croce &amp; Hein, ICML 2020), a minimum-norm attack: at each iteration the
/// classifier is linearised around the current iterate, the closest decision hyperplane (untargeted: over all classes;
/// FAB-T: the one towards a fixed target) is projected on from both the iterate and the original point (<see
/// cref="BoxHyperplaneProjection"/>), the two projections are mixed with weight alpha = min(|d1| / (|d1| + |d2|),
/// alpha_max) and extrapolated by eta; once the iterate is adversarial it is pulled back towards the original by beta.
/// The smallest adversarial perturbation found is kept.
/// <para>As an attack with a budget (AutoAttack's FAB-T: 100 iterations, 9 target classes, 1 restart; alpha_max 0.1,
/// eta 1.05, beta 0.9), an example counts only if its minimum-norm perturbation is within eps; eps also scales the
/// random starts of restarts after the first.</para>
/// </summary>
public sealed record Fab(
    ThreatModel Threat,
    int Iterations = 100,
    int Restarts = 1,
    bool Targeted = true,
    int TargetClasses = 9,
    double AlphaMax = 0.1,
    double Eta = 1.05,
    double Beta = 0.9,
    long Seed = 0
) : IAttack
{
    public string Name =>
        (Targeted ? $"FAB-T ({TargetClasses} targets" : "FAB (")
        + $"{(Targeted ? ", " : "")}{Threat}, {Iterations} it"
        + (Restarts > 1 ? $", {Restarts} restarts)" : ")");

    public IAttack WithSeed(long seed) => this with { Seed = seed };

    /// <summary>Reports the fraction of the batch's work done (every 10 iterations).</summary>
    public IProgress<double>? Progress { get; init; }

    public IAttack WithProgress(IProgress<double>? progress) => this with { Progress = progress };

    public Tensor Perturb(Classifier model, Tensor images, Tensor labels) =>
        Run(model, images, labels, Threat.Epsilon).Adversarial;

    /// <summary>
    /// The minimum-norm perturbations FAB finds, with no budget: per example the smallest adversarial point
    /// found and its norm (+infinity where none was found, or where the clean point is already misclassified: norm 0
    /// there).
    /// </summary>
    public (Tensor Adversarial, Tensor Norms) MinimumNorm(Classifier model, Tensor images, Tensor labels) =>
        Run(model, images, labels, double.PositiveInfinity);

    private (Tensor Adversarial, Tensor Norms) Run(Classifier model, Tensor images, Tensor labels, double budget)
    {
        using var mode = new AttackMode(model);
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)Seeds.Derive(Seed, images.shape[0]), images.device);
        var x = images.detach();
        var adv = x.clone();
        var (robust, order) = RobustPoints.Clean(model, x, labels);
        var norms = where(
            robust,
            full(robust.shape, double.PositiveInfinity, dtype: x.dtype, device: x.device),
            zeros(robust.shape, dtype: x.dtype, device: x.device)
        );
        int passes = Targeted ? Math.Min(TargetClasses, (int)order.shape[1] - 1) : 1;
        for (int pass = 0; pass < passes; pass++)
        {
            for (int r = 0; r < Math.Max(1, Restarts); r++)
            {
                int units = passes * Math.Max(1, Restarts),
                    unit = pass * Math.Max(1, Restarts) + r;
                using var passScope = NewDisposeScope();
                var todo = robust.nonzero().view(-1);
                if (todo.shape[0] == 0)
                    break;
                var target = Targeted ? order.index_select(0, todo)[.., pass + 1] : null;
                var (advCurr, normCurr) = SingleRun(
                    model,
                    x.index_select(0, todo),
                    labels.index_select(0, todo),
                    target,
                    randomStart: r > 0,
                    generator,
                    iteration => Progress?.Report((unit + (double)iteration / Iterations) / units)
                );
                // Success: a minimum-norm point was found and it is inside the budget (re-checked by the caller too).
                var ok = normCurr.le(budget).logical_and(normCurr.isfinite()); // (+inf: none found)
                var hit = RobustPoints.MarkBroken(robust, adv, todo, ok, advCurr);
                norms.index_copy_(0, hit, normCurr.index_select(0, ok.nonzero().view(-1)));
            }
        }
        return (adv.MoveToOuterDisposeScope(), norms.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Differences of logits f_k - f_y at <paramref name="x1"/> and their input gradients: for FAB-T only towards the
    /// target ([N,1] and [N,1,D]); untargeted for every class, with the true class's entry set to 1e10 so it is never
    /// chosen.
    /// </summary>
    private static (Tensor Df, Tensor Dg) LogitDifferences(Classifier model, Tensor x1, Tensor y, Tensor? target)
    {
        using var scope = NewDisposeScope();
        using var gradMode = enable_grad(); // the caller runs under no_grad
        var input = x1.detach().requires_grad_(true);
        var logits = model.call(input);
        long n = x1.shape[0];
        if (target is not null)
        {
            var diff = logits.gather(1, target.view(-1, 1)) - logits.gather(1, y.view(-1, 1));
            var g = torch.autograd.grad([diff.sum()], [input])[0];
            return (diff.detach().MoveToOuterDisposeScope(), g.reshape(n, 1, -1).MoveToOuterDisposeScope());
        }
        long k = logits.shape[1];
        var grads = new List<Tensor>();
        for (int j = 0; j < k; j++)
            grads.Add(torch.autograd.grad([logits[.., j].sum()], [input], retain_graph: j < k - 1)[0].reshape(n, -1));
        var jac = stack(grads, 1); // [N, K, D]
        var yIdx = y.view(-1, 1);
        var df = logits.detach() - logits.detach().gather(1, yIdx);
        var dg = jac - jac.gather(1, yIdx.view(-1, 1, 1).expand(-1, 1, jac.shape[2]));
        df.scatter_(1, yIdx, full_like(yIdx, 1e10, dtype: df.dtype));
        return (df.MoveToOuterDisposeScope(), dg.MoveToOuterDisposeScope());
    }

    private Tensor RowNorm(Tensor flat) => Threat.Norm == Norm.Linf ? flat.abs().amax([1]) : flat.pow(2).sum(1).sqrt();

    private (Tensor Adversarial, Tensor Norms) SingleRun(
        Classifier model,
        Tensor x,
        Tensor y,
        Tensor? target,
        bool randomStart,
        Generator generator,
        Action<int> reportIteration
    )
    {
        using var scope = NewDisposeScope();
        long bs = x.shape[0];
        var shape = x.shape;
        var x0 = x.reshape(bs, -1);
        var best = x.clone();
        var bestNorm = full(bs, 1e10, dtype: x.dtype, device: x.device);
        var x1 = x.clone();
        if (randomStart)
        {
            // A random point at half of min(best norm so far, eps) (the authors' restart rule).
            var t =
                Threat.Norm == Norm.Linf
                    ? rand(shape, dtype: x.dtype, device: x.device, generator: generator) * 2 - 1
                    : randn(shape, dtype: x.dtype, device: x.device, generator: generator);
            var radius = bestNorm.clamp_max(Threat.Epsilon).view(-1, 1, 1, 1);
            x1 = (x + radius * t / RowNorm(t.reshape(bs, -1)).view(-1, 1, 1, 1) * 0.5).clamp(0, 1);
        }
        for (int it = 0; it < Iterations; it++)
        {
            if (it % 10 == 0)
                reportIteration(it);
            using (no_grad())
            {
                var (df, dg) = LogitDifferences(model, x1, y, target);
                // Distance to each linearised boundary: |f_k - f_y| / ||grad(f_k - f_y)||_* (dual norm: l-1 for l-inf,
                // l-2 for l-2).
                var dual = Threat.Norm == Norm.Linf ? dg.abs().sum(2) : dg.pow(2).sum(2).sqrt();
                var closest = (df.abs() / (dual + 1e-12)).argmin(1);
                var w = dg.gather(1, closest.view(-1, 1, 1).expand(-1, 1, dg.shape[2])).squeeze(1);
                var dfc = df.gather(1, closest.view(-1, 1)).squeeze(1);
                var x1Flat = x1.reshape(bs, -1);
                var b = -dfc + (w * x1Flat).sum(1);
                // Project the iterate and the original point on that hyperplane (inside the box), in one batch.
                var d3 = BoxHyperplaneProjection.Project(Threat.Norm, cat([x1Flat, x0]), cat([w, w]), cat([b, b]));
                var d1 = d3.narrow(0, 0, bs).reshape(shape);
                var d2 = d3.narrow(0, bs, bs).reshape(shape);
                var a0 = RowNorm(d3).clamp_min(1e-8);
                var a1 = a0.narrow(0, 0, bs);
                var a2 = a0.narrow(0, bs, bs);
                var alpha = (a1 / (a1 + a2)).clamp(0, AlphaMax).view(-1, 1, 1, 1);
                x1 = ((x1 + Eta * d1) * (1 - alpha) + (x + d2 * Eta) * alpha).clamp(0, 1);

                var isAdv = model.call(x1).argmax(1).ne(y);
                var norm = RowNorm((x1 - x).reshape(bs, -1));
                var better = isAdv.logical_and(norm.lt(bestNorm));
                best = where(better.view(-1, 1, 1, 1), x1, best);
                bestNorm = where(better, norm, bestNorm);
                // Backward step for the adversarial iterates: towards the original point.
                x1 = where(isAdv.view(-1, 1, 1, 1), x + (x1 - x) * Beta, x1);
                scope.DisposeEverythingBut(best, bestNorm, x1, x0);
            }
        }
        var found = bestNorm.lt(1e10);
        var norms = where(found, bestNorm, full_like(bestNorm, double.PositiveInfinity));
        return (best.MoveToOuterDisposeScope(), norms.MoveToOuterDisposeScope());
    }
}
