using System.CommandLine;
using System.Text.Json.Nodes;
using ProxyRobust.Attacks;
using ProxyRobust.Data;
using ProxyRobust.Training;
using ProxyRobust.Reporting;
using TorchSharp;
using Device = TorchSharp.torch.Device;
using ProxyRobust.Core;

namespace ProxyRobust.Cli;

internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint: NAME.json, NAME.safetensors or a run folder", Required = true };
        var data = Shared.Data("evaluation data (same forms as for train)");
        var labels = Shared.Labels();
        var split = new Option<string>("--split") { Description = "train or test", DefaultValueFactory = _ => "test" };
        var ema = new Option<bool>("--ema") { Description = "evaluate the EMA weights (if the checkpoint has them)" };
        var n = new Option<int?>("--n-examples") { Description = "evaluate a seeded, class-balanced subset of this many points" };
        var attack = new Option<string>("--attack") { Description = "none | pgd | fgsm | autoattack", DefaultValueFactory = _ => "none" }.AcceptOnlyFromAmong("none", "pgd", "fgsm", "autoattack");
        var version = new Option<string>("--version") { Description = "AutoAttack version: standard | plus | rand (randomised defences)", DefaultValueFactory = _ => "standard" }
            .AcceptOnlyFromAmong("standard", "plus", "rand");
        var components = new Option<string?>("--attacks") { Description = "AutoAttack: run only these components (comma-separated, e.g. apgd-ce,apgd-t)" };
        var report = new Option<string?>("--report") { Description = "AutoAttack: write a report card (Markdown; JSON beside it) with clean, PGD-20 and AutoAttack per component" };
        var norm = new Option<string>("--norm") { Description = "linf or l2", DefaultValueFactory = _ => "linf" }.AcceptOnlyFromAmong("linf", "l2");
        var eps = new Option<double?>("--eps") { Description = "perturbation budget (required with an attack)" };
        var steps = new Option<int>("--steps") { Description = "PGD steps", DefaultValueFactory = _ => 20 };
        var restarts = new Option<int>("--restarts") { Description = "PGD random restarts", DefaultValueFactory = _ => 1 };
        var stepSize = new Option<double?>("--step-size") { Description = "PGD step size (default 2.5 eps / steps)" };
        var loss = new Option<string>("--loss") { Description = "ce (cross-entropy) or margin (Carlini-Wagner)", DefaultValueFactory = _ => "ce" }.AcceptOnlyFromAmong("ce", "margin");
        var targeted = new Option<string>("--targeted") { Description = "none | random (a random other class) | least-likely (the clean prediction's least likely class)", DefaultValueFactory = _ => "none" }
            .AcceptOnlyFromAmong("none", "random", "least-likely");
        var saveAdv = new Option<string?>("--save-adv") { Description = "write the adversarial examples (float32 N x H x W x C .npy in [0,1]) and their labels (.labels.npy)" };
        var saveLogits = new Option<string?>("--save-logits") { Description = "AutoAttack: write the model's logits on the returned examples (float32 N x K .npy), to re-check them in another framework" };
        var savePoints = Shared.SavePoints();
        var seed = Shared.Seed();
        var batch = Shared.BatchSize(256);
        var json = new Option<string?>("--json") { Description = "write the results as JSON to this file" };
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command("eval", "Evaluate a classifier: clean and robust (PGD) accuracy with Wilson 95% intervals, per class.")
        {
            checkpoint, data, labels, split, ema, n, attack, version, components, report, saveLogits, savePoints, norm, eps, steps, restarts, stepSize, loss, targeted, saveAdv, seed, batch, json, device, threads,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(p.GetValue(threads));
            IAttack? chosen = null;
            if (p.GetValue(attack) != "none")
            {
                double e = p.GetValue(eps) ?? throw new UsageException("--eps is required with --attack");
                if (e <= 0) throw new UsageException($"--eps must be positive, got {e}");
                var threat = new ThreatModel(ThreatModel.ParseNorm(p.GetValue(norm)!), e);
                int k = TrainCommand.Positive(p.GetValue(steps), "--steps");
                chosen = p.GetValue(attack) == "fgsm"
                    ? new Fgsm(threat)
                    : new Pgd(threat, k, p.GetValue(stepSize) ?? Pgd.DefaultStepSize(e, k), TrainCommand.Positive(p.GetValue(restarts), "--restarts"),
                              Loss: p.GetValue(loss) == "margin" ? AttackLoss.Margin : AttackLoss.CrossEntropy)
                    {
                        Targets = p.GetValue(targeted) switch { "random" => TargetChoice.Random, "least-likely" => TargetChoice.LeastLikely, _ => TargetChoice.None },
                    };
            }
            var dev = torch.device(p.GetValue(device)!);
            if (p.GetValue(attack) == "autoattack")
                return RunAutoAttack(p, dev, checkpoint, data, labels, split, ema, n, version, components, report, norm, eps, saveAdv, saveLogits, savePoints, seed, batch, json);
            using var opened = Shared.OpenModelAndData(p.GetValue(checkpoint)!, p.GetValue(ema), p.GetValue(data), p.GetValue(split)!,
                                                       p.GetValue(labels), p.GetValue(n), p.GetValue(seed), dev);
            var (model, dataset, spec) = (opened.Model, opened.Points, opened.Model.Spec);

            var result = ProgressView.Count("eval", dataset.Count, progress =>
                RobustEvaluation.Evaluate(model, dataset, chosen, TrainCommand.Positive(p.GetValue(batch), "--batch-size"), dev,
                                          p.GetValue(seed), keepAdversarial: p.GetValue(saveAdv) is not null, progress));
            var rows = new List<(string, string)>
            {
                ("model", spec.ToString()),
                ("data", $"{dataset.Source} ({dataset.Count} images)"),
                ("clean accuracy", TrainCommand.Percent(result.Clean.Accuracy, result.Clean.Wilson95)),
            };
            if (result.Robust is { } r) rows.Add(($"robust accuracy ({result.AttackName})", TrainCommand.Percent(r.Accuracy, r.Wilson95)));
            for (int c = 0; c < dataset.NumClasses; c++)
            {
                if (result.Clean.TotalPerClass[c] == 0) continue;
                var line = $"{(double)result.Clean.CorrectPerClass[c] / result.Clean.TotalPerClass[c]:P1}";
                if (result.Robust is { } rr) line += $"  robust {(double)rr.CorrectPerClass[c] / rr.TotalPerClass[c]:P1}";
                rows.Add(($"  {dataset.ClassNames[c]}", line));
            }
            rows.Add(("time", $"{result.Seconds:F1} s"));
            Shared.Table("evaluation", rows);

            if (p.GetValue(saveAdv) is { } advPath && result.Adversarial is { } adv) Shared.WriteImages(advPath, adv, dataset);
            if (p.GetValue(json) is { } path)
            {
                JsonObject Acc(AccuracyResult a) => new()
                {
                    ["accuracy"] = a.Accuracy, ["correct"] = a.Correct, ["total"] = a.Total, ["wilson95"] = new JsonArray(a.Wilson95.Low, a.Wilson95.High),
                    ["perClass"] = new JsonObject(Enumerable.Range(0, dataset.NumClasses).Select(c => KeyValuePair.Create(dataset.ClassNames[c],
                        (JsonNode?)(a.TotalPerClass[c] == 0 ? null : (double)a.CorrectPerClass[c] / a.TotalPerClass[c])))),
                };
                var node = new JsonObject
                {
                    ["checkpoint"] = p.GetValue(checkpoint), ["data"] = dataset.Source, ["split"] = p.GetValue(split), ["seed"] = p.GetValue(seed),
                    ["clean"] = Acc(result.Clean), ["attack"] = result.AttackName, ["robust"] = result.Robust is null ? null : Acc(result.Robust),
                    ["seconds"] = result.Seconds,
                };
                AtomicFile.WriteAllText(path, node.ToJsonString(Checkpoint.Json));
            }
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    private static int RunAutoAttack(ParseResult p, Device dev, Option<string> checkpoint, Option<string> data, Option<string?> labels,
                                     Option<string> split, Option<bool> ema, Option<int?> n, Option<string> version, Option<string?> components,
                                     Option<string?> report, Option<string> norm, Option<double?> eps, Option<string?> saveAdv, Option<string?> saveLogits,
                                     Option<string?> savePoints, Option<int> seed, Option<int> batch, Option<string?> json)
    {
        double e = p.GetValue(eps) ?? throw new UsageException("--eps is required with --attack");
        if (e <= 0) throw new UsageException($"--eps must be positive, got {e}");
        var threat = new ThreatModel(ThreatModel.ParseNorm(p.GetValue(norm)!), e);
        var v = p.GetValue(version) switch { "plus" => AutoAttackVersion.Plus, "rand" => AutoAttackVersion.Rand, _ => AutoAttackVersion.Standard };
        int batchSize = TrainCommand.Positive(p.GetValue(batch), "--batch-size");
        var runner = new AutoAttack(threat, v, p.GetValue(seed), batchSize);
        using var opened = Shared.OpenModelAndData(p.GetValue(checkpoint)!, p.GetValue(ema), p.GetValue(data), p.GetValue(split)!,
                                                   p.GetValue(labels), p.GetValue(n), p.GetValue(seed), dev);
        var (model, dataset) = (opened.Model, opened.Points);
        string[]? only = p.GetValue(components)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var known = runner.Components(dataset.NumClasses).Select(c => c.Key).ToList();
        if (only?.FirstOrDefault(o => !known.Contains(o)) is { } unknown)
            throw new UsageException($"--attacks: '{unknown}' is not part of AutoAttack {p.GetValue(version)} ({string.Join(", ", known)})");

        RobustResult? pgd = null;
        if (p.GetValue(report) is not null)
            pgd = ProgressView.Count("PGD-20", dataset.Count, progress => RobustEvaluation.Evaluate(
                model, dataset, new Pgd(threat, 20, Pgd.DefaultStepSize(e, 20)), batchSize, dev, p.GetValue(seed), progress: progress));
        var result = ProgressView.Stages("AutoAttack", progress => runner.Run(model, dataset, dev, only, progress));

        var rows = new List<(string, string)>
        {
            ("model", model.Spec.ToString()),
            ("data", $"{dataset.Source} ({dataset.Count} images)"),
            ("threat model", threat.ToString()),
            ("clean accuracy", TrainCommand.Percent(result.CleanAccuracy, Stats.Wilson95(result.CleanCorrect, result.Total))),
        };
        if (pgd?.Robust is { } pr) rows.Add(($"robust accuracy ({pgd.AttackName})", TrainCommand.Percent(pr.Accuracy, pr.Wilson95)));
        foreach (var s in result.Stages)
            rows.Add(($"after {s.Attack}", $"{(double)s.RobustAfter / result.Total:P2}  ({s.Attacked} attacked, {s.Seconds:F1} s)"));
        rows.Add(($"robust accuracy (AutoAttack {p.GetValue(version)})",
                  TrainCommand.Percent(result.RobustAccuracy, Stats.Wilson95(result.RobustCorrect, result.Total))));
        Shared.Table("AutoAttack", rows);
        foreach (var w in result.Warnings) Console.Error.WriteLine($"warning: {w}");

        if (p.GetValue(saveAdv) is { } advPath) Shared.WriteImages(advPath, result.Adversarial, dataset);
        if (p.GetValue(savePoints) is { } pointsPath) Shared.SavePoints(dataset, pointsPath);
        if (p.GetValue(saveLogits) is { } logitsPath)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var adv = torch.tensor(result.Adversarial).view(dataset.Count, dataset.Height, dataset.Width, dataset.Channels).permute(0, 3, 1, 2).to(dev);
            var logits = new List<torch.Tensor>();
            for (long s = 0; s < dataset.Count; s += batchSize) logits.Add(model.call(adv.narrow(0, s, Math.Min(batchSize, dataset.Count - s))).cpu());
            Npy.WriteFloats(logitsPath, [dataset.Count, model.Spec.NumClasses], torch.cat(logits).contiguous().data<float>().ToArray());
        }
        var card = new RobustnessCard(model.Spec.ToString(), p.GetValue(checkpoint)!, $"{dataset.Source} ({p.GetValue(split)})",
                                      threat.ToString(), threat.Norm == Norm.Linf ? "linf" : "l2", threat.Epsilon,
                                      p.GetValue(version)!, p.GetValue(seed),
                                      new CardAutoAttack(result.Total, result.CleanCorrect,
                                          result.Stages.Select(st => new CardStage(st.Attack, st.Description, st.RobustAfter, st.Attacked, st.Seconds)).ToList(),
                                          result.Warnings),
                                      pgd?.Robust is { } pr2 ? new CardPgd(pgd.AttackName!, pr2.Correct, pgd.Seconds) : null);
        if (p.GetValue(json) is { } path) AtomicFile.WriteAllText(path, card.ToJson().ToJsonString(Checkpoint.Json));
        if (p.GetValue(report) is { } md)
        {
            AtomicFile.WriteAllText(md, card.ToMarkdown());
            AtomicFile.WriteAllText(Path.ChangeExtension(md, ".json"), card.ToJson().ToJsonString(Checkpoint.Json));
        }
        return ExitCodes.Ok;
    }
}
