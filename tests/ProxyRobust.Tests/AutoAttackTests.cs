using ProxyRobust.Attacks;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class AutoAttackTests
{
    public AutoAttackTests() => TestSupport.InitTorch();

    /// <summary>A linear classifier z = W x + b on 1x8x8 images, wrapped as a Classifier (identity
    /// normalisation).</summary>
    private static (Classifier Model, Tensor W, Tensor B) LinearModel(int classes, int seed, double scale)
    {
        torch.manual_seed(seed);
        var spec = ArchSpec.For("small-cnn", 1, 8, 8, classes);
        var lin = nn.Linear(64, classes);
        var w = randn(classes, 64) * scale;
        var b = randn(classes) * 0.1;
        using (no_grad())
        {
            lin.weight!.copy_(w);
            lin.bias!.copy_(b);
        }
        return (new Classifier(spec, nn.Sequential(("flatten", nn.Flatten()), ("fc", lin))), w, b);
    }

    /// <summary>
    /// Closed form for a linear model without the box: the smallest perturbation that makes class j beat the
    /// label y has norm (z_y - z_j) / ||w_y - w_j||_* (dual norm: l-1 for l-inf, l-2 for l-2); the minimum over j is
    /// the answer. Also returns whether that minimiser stays inside [0,1] (then the box does not change the answer).
    /// </summary>
    private static (double Distance, bool InsideBox) ClosedFormDistance(Tensor w, Tensor b, Tensor x, long y, Norm norm)
    {
        var z = (w.matmul(x) + b).data<float>().ToArray();
        double best = double.PositiveInfinity;
        bool inside = true;
        for (int j = 0; j < z.Length; j++)
        {
            if (j == y)
                continue;
            var v = w[y] - w[j];
            double dual = norm == Norm.Linf ? v.abs().sum().item<float>() : v.norm().item<float>();
            double dist = (z[y] - z[j]) / dual;
            if (dist >= best)
                continue;
            best = dist;
            var d = norm == Norm.Linf ? -dist * v.sign() : -dist * v / v.norm();
            var moved = x + d;
            inside = moved.min().item<float>() >= 0 && moved.max().item<float>() <= 1;
        }
        return (best, inside);
    }

    [Theory]
    [InlineData(Norm.Linf)]
    [InlineData(Norm.L2)]
    public void Fab_finds_the_minimum_norm_of_a_linear_model_within_two_percent(Norm norm)
    {
        var (model, w, b) = LinearModel(5, seed: 3, scale: norm == Norm.Linf ? 0.1 : 0.3);
        torch.manual_seed(4);
        using var x = rand(40, 1, 8, 8) * 0.4 + 0.3;
        using var y = model.call(x).argmax(1);
        var fab = new Fab(new ThreatModel(norm, 1.0), Iterations: 100, Targeted: false);
        var (adv, norms) = fab.MinimumNorm(model, x, y);
        var found = norms.data<float>().ToArray();
        int compared = 0;
        for (int i = 0; i < 40; i++)
        {
            var (truth, inside) = ClosedFormDistance(w, b, x[i].flatten(), y[i].item<long>(), norm);
            if (!inside)
                continue;
            compared++;
            // FAB's answer is an adversarial point, so never below the true minimum; and within 2% of it.
            Assert.InRange(found[i], truth * (1 - 1e-4), truth * 1.02);
        }
        Assert.True(compared >= 30, $"only {compared} points had a minimiser inside the box");
        Assert.True(model.call(adv).argmax(1).ne(y).all().item<bool>(), "every returned point is misclassified");
    }

    [Theory]
    [InlineData(Norm.Linf)]
    [InlineData(Norm.L2)]
    public void Box_hyperplane_projection_agrees_with_bisection(Norm norm)
    {
        // The sorted-breakpoint solution against a plain bisection on the same one-dimensional monotone equation, in
        // double.
        torch.manual_seed(11);
        int n = 64,
            dims = 30;
        using var t = rand(n, dims, dtype: ScalarType.Float64);
        using var w = randn(n, dims, dtype: ScalarType.Float64);
        using var target = rand(n, dims, dtype: ScalarType.Float64);
        using var b = (w * target).sum(1); // a hyperplane through a point of the box: always reachable
        using var d = BoxHyperplaneProjection.Project(norm, t, w, b);
        var tt = t.data<double>().ToArray();
        var ww = w.data<double>().ToArray();
        var bb = b.data<double>().ToArray();
        var dd = d.data<double>().ToArray();
        for (int r = 0; r < n; r++)
        {
            var tr = tt.AsSpan(r * dims, dims).ToArray();
            var wr = ww.AsSpan(r * dims, dims).ToArray();
            double c = bb[r] - tr.Zip(wr, (p, q) => p * q).Sum(); // required change of w.x
            // Move of parameter s: l-inf d_i = sign(c w_i) min(s, room_i); l-2 d_i = clip(s c w_i / |c|, box).
            double[] Move(double s) =>
                Enumerable
                    .Range(0, dims)
                    .Select(i =>
                    {
                        double dir = Math.Sign(c * wr[i]);
                        double room = dir > 0 ? 1 - tr[i] : tr[i];
                        return norm == Norm.Linf ? dir * Math.Min(s, room) : dir * Math.Min(s * Math.Abs(wr[i]), room);
                    })
                    .ToArray();
            double Gain(double s) => Move(s).Zip(wr, (p, q) => p * q).Sum();
            double lo = 0,
                hi = 1e6;
            for (int k = 0; k < 200; k++)
            {
                double mid = (lo + hi) / 2;
                if (Math.Abs(Gain(mid)) < Math.Abs(c))
                    lo = mid;
                else
                    hi = mid;
            }
            var expected = Move(hi);
            for (int i = 0; i < dims; i++)
                Assert.Equal(expected[i], dd[r * dims + i], 1e-7);
            // and the result lies on the hyperplane, inside the box
            Assert.Equal(bb[r], tr.Select((v, i) => (v + dd[r * dims + i]) * wr[i]).Sum(), 1e-7);
            Assert.All(tr.Select((v, i) => v + dd[r * dims + i]), v => Assert.InRange(v, -1e-12, 1 + 1e-12));
        }
    }

    [Theory]
    [InlineData(Norm.Linf, 0.05)]
    [InlineData(Norm.L2, 0.8)]
    public void AutoAttack_components_stay_in_the_ball_and_box_and_beat_pgd(Norm norm, double eps)
    {
        using var model = TestSupport.BrieflyTrained(out var data);
        var (x, y) = new BatchSampler(data, 120, false, AugmentOptions.None, 0).Epoch(0).First().ToTensors(CPU);
        var threat = new ThreatModel(norm, eps);
        int Robust(IAttack a)
        {
            using var adv = a.Perturb(model, x, y);
            double worst = threat.NormOf(adv - x).max().item<float>();
            Assert.True(worst <= eps * (1 + 1e-5), $"{a.Name}: norm {worst} > {eps}");
            Assert.True(adv.min().item<float>() >= 0 && adv.max().item<float>() <= 1, $"{a.Name} left the box");
            using var noGrad = no_grad();
            return (int)model.call(adv).argmax(1).eq(y).sum().item<long>();
        }
        int clean;
        using (no_grad())
            clean = (int)model.call(x).argmax(1).eq(y).sum().item<long>();
        int pgd = Robust(new Pgd(threat, 20, Pgd.DefaultStepSize(eps, 20), Seed: 1));
        int apgdCe = Robust(new Apgd(threat, 100, Loss: ApgdLoss.CrossEntropy, Seed: 1));
        // (fewer targets, iterations and queries than AutoAttack's to keep the suite fast; the full ensemble runs
        // below)
        int apgdT = Robust(new Apgd(threat, 100, Loss: ApgdLoss.TargetedDlr, TargetClasses: 3, Seed: 1));
        int apgdDlr = Robust(new Apgd(threat, 50, Loss: ApgdLoss.Dlr, Seed: 1));
        int fabT = Robust(new Fab(threat, 30, Targeted: true, TargetClasses: 2, Seed: 1));
        int fab = Robust(new Fab(threat, 20, Restarts: 2, Targeted: false, Seed: 1));
        int square = Robust(new Square(threat, 300, Seed: 1));
        int apgdPm = Robust(new Apgd(threat, 50, Loss: ApgdLoss.ProbabilityMargin, Seed: 1));
        int apgdMalt = Robust(
            new Apgd(threat, 50, Loss: ApgdLoss.TargetedDlr, TargetClasses: 2, Seed: 1, Targeting: TargetOrder.Malt)
        );
        // A sequence (as the "fast" validation of training runs it) never leaves more robust points than its first
        // attack alone with the seed the sequence gives it.
        var ce = new Apgd(threat, 50, Loss: ApgdLoss.CrossEntropy);
        var malt = new Apgd(threat, 50, Loss: ApgdLoss.TargetedDlr, TargetClasses: 2, Targeting: TargetOrder.Malt);
        int sequence = Robust(new AttackSequence("ce, malt", threat, [ce, malt], Seed: 4));
        int firstAlone = Robust(ce.WithSeed(Seeds.Derive(4, 0)));
        Assert.True(sequence <= firstAlone, $"sequence {sequence} > its first attack alone {firstAlone}");
        Assert.InRange(pgd, 10, clean - 10); // the budget is neither trivial nor hopeless for this model
        Assert.True(apgdCe <= pgd, $"APGD-CE {apgdCe} > PGD-20 {pgd} robust points");
        Assert.True(apgdT <= pgd, $"APGD-T {apgdT} > PGD-20 {pgd}");
        // weaker or black-box components still find adversarial examples on this undefended model
        Assert.True(
            apgdDlr < clean && fabT < clean && fab < clean && square < clean && apgdPm < clean && apgdMalt < clean,
            $"DLR {apgdDlr}, FAB-T {fabT}, FAB {fab}, Square {square}, PM {apgdPm}, MALT {apgdMalt} of {clean}"
        );
    }

    [Theory]
    [InlineData(Norm.Linf)]
    [InlineData(Norm.L2)]
    public void Malt_orders_the_targets_of_a_linear_model_by_their_exact_boundary_distance(Norm norm)
    {
        // For z = W x + b the boundary between the label y and class j is at distance (z_y - z_j) / ||w_y - w_j||_*
        // (dual norm), computed here in doubles from the weights; MALT's linear estimate must give exactly that order.
        var (model, w, b) = LinearModel(10, 5, 0.3);
        torch.manual_seed(6);
        using var x = rand(40, 1, 8, 8);
        using var y = model.call(x).argmax(1).detach();
        using var order = MaltTargeting.Order(model, x, y, norm);
        Assert.Equal([40L, 9L], order.shape);
        var W = w.data<float>().ToArray();
        var B = b.data<float>().ToArray();
        var X = x.flatten(1).data<float>().ToArray();
        var labels = y.data<long>().ToArray();
        var got = order.data<long>().ToArray();
        int differsFromLogitOrder = 0;
        for (int i = 0; i < 40; i++)
        {
            double Logit(int c) => B[c] + Enumerable.Range(0, 64).Sum(d => (double)W[c * 64 + d] * X[i * 64 + d]);
            int yi = (int)labels[i];
            double Distance(int j)
            {
                var gap = Enumerable.Range(0, 64).Select(d => (double)W[yi * 64 + d] - W[j * 64 + d]).ToArray();
                double dual = norm == Norm.Linf ? gap.Sum(Math.Abs) : Math.Sqrt(gap.Sum(v => v * v));
                return (Logit(yi) - Logit(j)) / dual;
            }
            var exact = Enumerable.Range(0, 10).Where(j => j != yi).OrderBy(Distance).ToArray();
            var byLogit = Enumerable.Range(0, 10).Where(j => j != yi).OrderByDescending(Logit).ToArray();
            Assert.Equal(exact.Select(j => (long)j), got.Skip(i * 9).Take(9));
            if (!exact.SequenceEqual(byLogit))
                differsFromLogitOrder++;
        }
        // the test means something only if MALT's order is not AutoAttack's logit order
        Assert.True(differsFromLogitOrder > 20, $"only {differsFromLogitOrder} of 40 orders differ from the logits'");
    }

    [Fact]
    public void Fast_validation_is_never_above_pgd_validation_of_the_same_run()
    {
        // The same seeded PGD-AT run validated with PGD-10 and with AutoAttack fast: the weights do not depend on the
        // validation attack (its own generators, eval mode), so at every epoch fast's robust accuracy is at most PGD's
        // and the clean accuracy is the same.
        using var tmp = new TempDir();
        Experiments.TrainRunResult Run(string valAttack) =>
            Experiments.TrainRun.Execute(
                new Experiments.TrainRunConfig
                {
                    TrainSize = 400,
                    ValSize = 100,
                    EvalSize = 50,
                    Method = Experiments.TrainMethod.Pgd,
                    Epsilon = 0.1,
                    ValAttack = valAttack,
                    OutputDir = tmp.File(valAttack),
                    Options = new TrainOptions
                    {
                        Epochs = 2,
                        BatchSize = 64,
                        LearningRate = 0.05,
                        Seed = 2,
                    },
                }
            );
        var pgd = Run("pgd").Training.History;
        var fast = Run("fast").Training.History;
        Assert.Equal(2, fast.Count);
        for (int e = 0; e < 2; e++)
        {
            Assert.Equal(pgd[e].ValClean, fast[e].ValClean);
            Assert.True(fast[e].ValRobust <= pgd[e].ValRobust, $"epoch {e + 1}: fast {fast[e].ValRobust} > PGD");
        }
    }

    [Fact]
    public void Probability_margin_is_negative_exactly_on_misclassified_points()
    {
        // Hand-checked: logits ln 1, ln 2, ln 3 give p = 1/6, 2/6, 3/6; the margin of class 1 is 2/6 - 3/6, of class 2
        // is 3/6 - 2/6.
        using var z = tensor(new[] { 0f, MathF.Log(2), MathF.Log(3), 0f, MathF.Log(2), MathF.Log(3) }).view(2, 3);
        var pm = AttackLosses.ProbabilityMargin(z, tensor(new long[] { 1, 2 })).data<float>().ToArray();
        Assert.Equal(-1.0 / 6, pm[0], 5);
        Assert.Equal(1.0 / 6, pm[1], 5);
        torch.manual_seed(3);
        using var logits = randn(2000, 10) * 3;
        using var labels = randint(0, 10, [2000], dtype: ScalarType.Int64);
        var margin = AttackLosses.ProbabilityMargin(logits, labels).data<float>().ToArray();
        var wrong = logits.argmax(1).ne(labels).data<bool>().ToArray();
        Assert.InRange(wrong.Count(v => v), 1000, 1999); // both kinds of points occur
        for (int i = 0; i < 2000; i++)
            Assert.Equal(wrong[i], margin[i] < 0);
        Assert.All(margin, m => Assert.InRange(m, -1f, 1f));
    }

    [Fact]
    public void Eval_autoattack_cli_writes_a_report_card_and_rejects_unknown_components()
    {
        using var tmp = new TempDir();
        var (dir, _) = TestSupport.PgdTrainedFashionMnist();
        var (code, _, err) = TestSupport.RunCli(
            "eval",
            "--checkpoint",
            dir,
            "--attack",
            "autoattack",
            "--version",
            "fast",
            "--eps",
            "0.1",
            "--n-examples",
            "30",
            "--report",
            tmp.File("card.md"),
            "--save-adv",
            tmp.File("adv.npy")
        );
        Assert.True(code == 0, err);
        var card = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tmp.File("card.json")))!;
        int clean = (int)card["clean"]!["correct"]!,
            pgd = (int)card["pgd"]!["correct"]!,
            aa = (int)card["autoattack"]!["correct"]!;
        Assert.Equal(30, (int)card["points"]!);
        Assert.True(aa <= pgd && pgd <= clean, $"clean {clean}, PGD-20 {pgd}, AutoAttack fast {aa}");
        Assert.Contains("APGD-T with MALT targets", File.ReadAllText(tmp.File("card.md")));
        // the card names, per component, the points it broke first: together, every clean-correct point not robust
        var stages = card["autoattack"]!["stages"]!.AsArray();
        Assert.Equal(["apgd-ce", "apgd-malt"], stages.Select(st => (string)st!["attack"]!));
        Assert.Equal(clean - aa, stages.Sum(st => st!["broken"]!.AsArray().Count));
        Assert.True(File.Exists(tmp.File("adv.labels.npy")));
        (code, _, err) = TestSupport.RunCli(
            "eval",
            "--checkpoint",
            dir,
            "--attack",
            "autoattack",
            "--attacks",
            "apgd-ce,nope",
            "--eps",
            "0.1"
        );
        Assert.Equal(2, code);
        Assert.Contains("'nope' is not part of AutoAttack", err);
        (code, _, err) = TestSupport.RunCli(
            "eval",
            "--checkpoint",
            dir,
            "--attack",
            "autoattack",
            "--attacks",
            "apgd-malt",
            "--eps",
            "0.1"
        );
        Assert.Equal(2, code);
        Assert.Contains("--version strong has apgd-malt", err);
    }

    /// <summary>
    /// The long components report how far they are on a batch (so AutoAttack's progress moves within a batch):
    /// fractions in [0,1], never going back, more than one per batch.
    /// </summary>
    [Fact]
    public void Long_attacks_report_their_progress_within_a_batch()
    {
        var (model, _, _) = LinearModel(5, 3, 1.0);
        using var scope = NewDisposeScope();
        var x = rand(6, 1, 8, 8);
        Tensor y;
        using (no_grad())
            y = model.call(x).argmax(1); // every point correct, and with a tiny budget it stays so: full runs
        var threat = new ThreatModel(Norm.Linf, 1e-4);
        IAttack[] attacks =
        [
            new Apgd(threat, 50, Loss: ApgdLoss.TargetedDlr, TargetClasses: 3),
            new Fab(threat, 10, Targeted: true, TargetClasses: 3),
            new Square(threat, 300),
        ];
        foreach (var attack in attacks)
        {
            var seen = new List<double>();
            attack.WithProgress(new Reporter<double>(seen.Add)).Perturb(model, x, y);
            Assert.True(seen.Count >= 2, $"{attack.Name}: {seen.Count} reports");
            Assert.All(seen, f => Assert.InRange(f, 0.0, 1.0));
            Assert.True(
                seen.Zip(seen.Skip(1)).All(p => p.Second >= p.First),
                $"{attack.Name} went back: {string.Join(", ", seen)}"
            );
        }
    }

    [Fact]
    public void Apgd_step_size_schedule_has_the_papers_checkpoints()
    {
        // w_0 = 0, w_1 = 22, then gaps shrinking by 3 down to 6 (of 100 iterations): 22, 19, 16, 13, 10, 7, 6, 6, ...
        int k = Math.Max((int)(0.22 * 100), 1),
            min = Math.Max((int)(0.06 * 100), 1),
            dec = Math.Max((int)(0.03 * 100), 1);
        var checkpoints = new List<int>();
        int since = 0;
        for (int i = 0; i < 100; i++)
            if (++since == k)
            {
                checkpoints.Add(i + 1);
                k = Math.Max(k - dec, min);
                since = 0;
            }
        // Croce & Hein: p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), p_0 = 0, p_1 = 0.22
        var paper = new List<int>();
        double p0 = 0,
            p1 = 0.22;
        while (p1 <= 1.0 + 1e-9)
        {
            paper.Add((int)Math.Round(p1 * 100));
            double next = p1 + Math.Max(p1 - p0 - 0.03, 0.06);
            p0 = p1;
            p1 = next;
        }
        Assert.Equal(paper, checkpoints);
    }

    [Fact]
    public void Square_schedule_and_l2_pattern_follow_the_paper()
    {
        var sq = new Square(new ThreatModel(Norm.Linf, 0.1));
        Assert.Equal(0.8, sq.WindowFraction(0));
        Assert.Equal(0.8, sq.WindowFraction(10));
        Assert.Equal(0.4, sq.WindowFraction(11));
        Assert.Equal(0.8 / 512, sq.WindowFraction(9000));
        foreach (var s in new long[] { 3, 5, 7, 8 })
        {
            using var eta = Square.Eta(s);
            Assert.Equal(1.0, eta.pow(2).sum().item<float>(), 5); // unit l-2 norm
            Assert.True(eta[..(int)(s / 2)].gt(0).all().item<bool>()); // top half positive,
            Assert.True(eta[(int)(s / 2)..].lt(0).all().item<bool>()); // bottom half negative,
            int c = (int)(s / 4); // peaked at the centre of the top half
            Assert.Equal(eta[..(int)(s / 2)].max().item<float>(), eta[c, (int)(s / 2)].item<float>(), 6);
        }
    }

    [Fact]
    public void AutoAttack_on_a_pgd_trained_fashion_mnist_model_is_at_most_pgd_and_close_to_it()
    {
        // End to end on real data: PGD-AT on 2,000 Fashion-MNIST images, then AutoAttack (strong, whose first four
        // stages are standard) and PGD-20 at eps 0.1 on the same 100 test points. AutoAttack may only be lower (it
        // includes stronger attacks), and not by much on an honestly trained model: a large gap would mean masked
        // gradients or a broken attack.
        var (dir, _) = TestSupport.PgdTrainedFashionMnist();
        using var model = Checkpoint.LoadClassifier(Path.Combine(dir, "final.json"));
        using var test = TestSupport.FashionMnist(Split.Test);
        using var points = test.Split(100, 7).Taken;
        var threat = new ThreatModel(Norm.Linf, 0.1);
        var pgd = RobustEvaluation.Evaluate(
            model,
            points,
            new Pgd(threat, 20, Pgd.DefaultStepSize(0.1, 20)),
            100,
            CPU,
            seed: 3
        );
        // strong runs standard's components in standard's positions (so with standard's seeds: a component's batches
        // are seeded by its position), then APGD-PM and APGD-MALT. One strong run therefore gives standard's result
        // after its fourth stage, and a standalone standard run (twice the test's time) is not needed to know it.
        var standardComponents = new AutoAttack(threat, AutoAttackVersion.Standard, seed: 3, batchSize: 100).Components(
            10
        );
        var strongAttack = new AutoAttack(threat, AutoAttackVersion.Strong, seed: 3, batchSize: 100);
        Assert.Equal(
            standardComponents.Select(c => (c.Key, c.Attack.Name)),
            strongAttack.Components(10).Take(4).Select(c => (c.Key, c.Attack.Name))
        );
        var aa = strongAttack.Run(model, points, CPU);
        int standardRobust = aa.Stages[3].RobustAfter;
        Assert.Equal(pgd.Clean.Correct, aa.CleanCorrect);
        Assert.True(
            standardRobust <= pgd.Robust!.Correct,
            $"AutoAttack {standardRobust} > PGD-20 {pgd.Robust.Correct} robust points"
        );
        Assert.True(
            standardRobust >= pgd.Robust.Correct - 8,
            $"AutoAttack {standardRobust} far below PGD-20 {pgd.Robust.Correct}"
        );
        Assert.True(standardRobust > 20, $"robust accuracy {standardRobust}% after PGD-AT");
        Assert.Equal(["apgd-ce", "apgd-t", "fab-t", "square", "apgd-pm", "apgd-malt"], aa.Stages.Select(s => s.Attack));
        // strong never ends with more robust points than standard: every stage only removes points.
        for (int i = 1; i < aa.Stages.Count; i++)
            Assert.True(aa.Stages[i].RobustAfter <= aa.Stages[i - 1].RobustAfter);
        Assert.Equal(aa.RobustCorrect, aa.Stages[^1].RobustAfter);
        // Each component's newly broken points: disjoint, and together exactly the clean-correct points not robust.
        var cleanCorrect = pgd.CleanHits;
        var broken = aa.Stages.SelectMany(s => s.Broken!).ToList();
        Assert.Equal(broken.Count, broken.Distinct().Count());
        Assert.Equal(
            Enumerable.Range(0, 100).Where(i => cleanCorrect[i] && !aa.Robust[i]).ToArray(),
            broken.Order().ToArray()
        );
        // fast shares APGD-CE (same seed) and ends with MALT, and lands close to standard.
        var fast = new AutoAttack(threat, AutoAttackVersion.Fast, seed: 3, batchSize: 100).Run(model, points, CPU);
        Assert.Equal(aa.Stages[0].RobustAfter, fast.Stages[0].RobustAfter);
        Assert.True(fast.RobustCorrect <= fast.Stages[0].RobustAfter);
        Assert.True(
            Math.Abs(fast.RobustCorrect - standardRobust) <= 3,
            $"fast {fast.RobustCorrect} vs standard {standardRobust} robust points of 100"
        );
        // Re-evaluate the returned examples: exactly the points reported robust are classified correctly.
        var adv = tensor(aa.Adversarial).view(100, 28, 28, 1).permute(0, 3, 1, 2);
        var (_, y) = new BatchSampler(points, 100, false, AugmentOptions.None, 0).Epoch(0).First().ToTensors(CPU);
        using (no_grad())
            Assert.Equal(aa.Robust, model.call(adv).argmax(1).eq(y).data<bool>().ToArray());
    }
}
