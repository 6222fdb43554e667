using System.CommandLine;
using ProxyRobust.Attacks;
using ProxyRobust.Core;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

internal static class EvalCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "checkpoint: NAME.json, NAME.safetensors or a run folder",
            Required = true,
        };
        var data = Shared.Data("evaluation data (same forms as for train)");
        var labels = Shared.Labels();
        var split = Shared.Split();
        var ema = new Option<bool>("--ema") { Description = "evaluate the EMA weights (if the checkpoint has them)" };
        var n = new Option<int?>("--n-examples")
        {
            Description = "evaluate a seeded, class-balanced subset of this many points",
        }.Positive();
        var attack = new Option<string>("--attack")
        {
            Description = "none | pgd | fgsm | autoattack",
            DefaultValueFactory = _ => "none",
        }.AcceptOnlyFromAmong("none", "pgd", "fgsm", "autoattack");
        var version = new Option<string>("--version")
        {
            Description =
                "AutoAttack version: standard | plus | rand (randomised defences) | fast (APGD-CE, then APGD-T on "
                + "MALT's targets: screening) | strong (standard, then APGD-PM and APGD-MALT: final numbers)",
            DefaultValueFactory = _ => "standard",
        }.AcceptOnlyFromAmong("standard", "plus", "rand", "fast", "strong");
        var maltTargets = new Option<int>("--malt-targets")
        {
            Description = "AutoAttack fast/strong: target classes of APGD-MALT (nearest boundaries first)",
            DefaultValueFactory = _ => 5,
        }.Positive();
        var maltIterations = new Option<int>("--malt-iterations")
        {
            Description = "AutoAttack fast/strong: APGD iterations per MALT target",
            DefaultValueFactory = _ => 100,
        }.Positive();
        var components = new Option<string?>("--attacks")
        {
            Description = "AutoAttack: run only these components (comma-separated, e.g. apgd-ce,apgd-t)",
        };
        var report = new Option<string?>("--report")
        {
            Description =
                "AutoAttack: write a report card (Markdown; JSON beside it) with clean, PGD-20 and AutoAttack per "
                + "component",
        };
        var norm = new Option<string>("--norm")
        {
            Description = "linf or l2",
            DefaultValueFactory = _ => "linf",
        }.AcceptOnlyFromAmong("linf", "l2");
        var eps = new Option<double?>("--eps")
        {
            Description = "perturbation budget (required with an attack)",
        }.Positive();
        var steps = new Option<int>("--steps") { Description = "PGD steps", DefaultValueFactory = _ => 20 }.Positive();
        var restarts = new Option<int>("--restarts")
        {
            Description = "PGD random restarts",
            DefaultValueFactory = _ => 1,
        }.Positive();
        var stepSize = new Option<double?>("--step-size")
        {
            Description = "PGD step size (default 2.5 eps / steps)",
        }.Positive();
        var loss = new Option<string>("--loss")
        {
            Description =
                "ce (cross-entropy), margin (Carlini-Wagner, logits) or pm (probability margin, Xie et al. 2024)",
            DefaultValueFactory = _ => "ce",
        }.AcceptOnlyFromAmong("ce", "margin", "pm");
        var targeted = new Option<string>("--targeted")
        {
            Description =
                "none | random (a random other class) | least-likely (the clean prediction's least likely class)",
            DefaultValueFactory = _ => "none",
        }.AcceptOnlyFromAmong("none", "random", "least-likely");
        var saveAdv = new Option<string?>("--save-adv")
        {
            Description =
                "write the adversarial examples (float32 N x H x W x C .npy in [0,1]) and their labels (.labels.npy)",
        };
        var saveLogits = new Option<string?>("--save-logits")
        {
            Description =
                "AutoAttack: write the model's logits on the returned examples (float32 N x K .npy), to re-check "
                + "them in another framework",
        };
        var savePoints = Shared.SavePoints();
        var resume = new Option<bool>("--resume")
        {
            Description =
                "AutoAttack: continue an interrupted run from the state kept beside --report (or --json); same "
                + "result as an uninterrupted run",
        };
        var seed = Shared.Seed();
        var batch = Shared.BatchSize(256);
        var json = new Option<string?>("--json") { Description = "write the results as JSON to this file" };
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "eval",
            "Evaluate a classifier: clean and robust (PGD, AutoAttack) accuracy with Wilson 95% intervals, per class."
        )
        {
            checkpoint,
            data,
            labels,
            split,
            ema,
            n,
            attack,
            version,
            maltTargets,
            maltIterations,
            components,
            report,
            saveLogits,
            savePoints,
            norm,
            eps,
            steps,
            restarts,
            stepSize,
            loss,
            targeted,
            saveAdv,
            resume,
            seed,
            batch,
            json,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var request = new EvaluateRequest
                {
                    Checkpoint = p.GetValue(checkpoint)!,
                    Ema = p.GetValue(ema),
                    Data = p.GetValue(data),
                    Split = Shared.SplitOf(p.GetValue(split)!),
                    Labels = p.GetValue(labels),
                    Examples = p.GetValue(n),
                    Seed = p.GetValue(seed),
                    BatchSize = p.GetValue(batch),
                    Device = p.GetValue(device)!,
                    Attack = p.GetValue(attack) switch
                    {
                        "pgd" => EvalAttack.Pgd,
                        "fgsm" => EvalAttack.Fgsm,
                        "autoattack" => EvalAttack.AutoAttack,
                        _ => EvalAttack.None,
                    },
                    Norm = ThreatModel.ParseNorm(p.GetValue(norm)!),
                    Epsilon = p.GetValue(eps),
                    Steps = p.GetValue(steps),
                    Restarts = p.GetValue(restarts),
                    StepSize = p.GetValue(stepSize),
                    Loss = p.GetValue(loss) switch
                    {
                        "margin" => AttackLoss.Margin,
                        "pm" => AttackLoss.ProbabilityMargin,
                        _ => AttackLoss.CrossEntropy,
                    },
                    Targets = p.GetValue(targeted) switch
                    {
                        "random" => TargetChoice.Random,
                        "least-likely" => TargetChoice.LeastLikely,
                        _ => TargetChoice.None,
                    },
                    Version = Enum.Parse<AutoAttackVersion>(p.GetValue(version)!, ignoreCase: true),
                    MaltTargets = p.GetValue(maltTargets),
                    MaltIterations = p.GetValue(maltIterations),
                    Components = p.GetValue(components)
                        ?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                    Json = p.GetValue(json),
                    Report = p.GetValue(report),
                    SaveAdversarial = p.GetValue(saveAdv),
                    SaveLogits = p.GetValue(saveLogits),
                    SavePoints = p.GetValue(savePoints),
                    Resume = p.GetValue(resume),
                };
                if (request.Attack != EvalAttack.None && request.Epsilon is null)
                    throw new UsageException("--eps is required with --attack");
                if (request.Resume && request.Attack != EvalAttack.AutoAttack)
                    throw new UsageException("--resume is for --attack autoattack");
                if (request.Resume && request.StatePath is null)
                    throw new UsageException("--resume needs --report or --json (the state is kept beside it)");
                using var ranks = Shared.StartRanks();
                Shared.StartTorch(p.GetValue(threads), ranks);
                if (!ranks.Ranks.IsRoot) // rank 0 reports for the job
                {
                    EvaluateRun.Execute(request, null, cancel, ranks.Ranks);
                    return ExitCodes.Ok;
                }
                var outcome = ProgressView.Stages(
                    request.Attack == EvalAttack.AutoAttack ? "AutoAttack" : "eval",
                    progress => EvaluateRun.Execute(request, progress, cancel, ranks.Ranks)
                );
                if (outcome.Card is { } card)
                    Show(card, outcome);
                else
                    Show(outcome.Plain!, outcome);
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    private static void Show(RobustResult result, EvaluateOutcome o)
    {
        var rows = new List<(string, string)>
        {
            ("model", o.Model),
            ("data", $"{o.Data} ({o.Points} images)"),
            (
                "clean accuracy",
                Shared.Percent(result.Clean.Accuracy, [result.Clean.Wilson95.Low, result.Clean.Wilson95.High])
            ),
        };
        if (result.Robust is { } r)
            rows.Add(
                (
                    $"robust accuracy ({result.AttackName})",
                    Shared.Percent(r.Accuracy, [r.Wilson95.Low, r.Wilson95.High])
                )
            );
        for (int c = 0; c < o.ClassNames.Count; c++)
        {
            if (result.Clean.TotalPerClass[c] == 0)
                continue;
            var line = $"{(double)result.Clean.CorrectPerClass[c] / result.Clean.TotalPerClass[c]:P1}";
            if (result.Robust is { } rr)
                line += $"  robust {(double)rr.CorrectPerClass[c] / rr.TotalPerClass[c]:P1}";
            rows.Add(($"  {o.ClassNames[c]}", line));
        }
        rows.Add(("time", $"{result.Seconds:F1} s"));
        Shared.Table("evaluation", rows);
    }

    private static void Show(Reporting.RobustnessCard card, EvaluateOutcome o)
    {
        var aa = card.AutoAttack;
        static double[] Ci(int correct, int total)
        {
            var (lo, hi) = Stats.Wilson95(correct, total);
            return [lo, hi];
        }
        var rows = new List<(string, string)>
        {
            ("model", o.Model),
            ("data", $"{o.Data} ({o.Points} images)"),
            ("threat model", card.Threat),
            ("clean accuracy", Shared.Percent(aa.CleanAccuracy, Ci(aa.CleanCorrect, aa.Total))),
        };
        if (card.Pgd is { } pgd)
            rows.Add(
                (
                    $"robust accuracy ({pgd.AttackName})",
                    Shared.Percent((double)pgd.Correct / aa.Total, Ci(pgd.Correct, aa.Total))
                )
            );
        foreach (var s in aa.Stages)
            rows.Add(
                (
                    $"after {s.Attack}",
                    $"{(double)s.RobustAfter / aa.Total:P2}  ({s.Attacked} attacked, {s.Seconds:F1} s)"
                )
            );
        rows.Add(
            (
                $"robust accuracy (AutoAttack {card.Version})",
                Shared.Percent(aa.RobustAccuracy, Ci(aa.RobustCorrect, aa.Total))
            )
        );
        Shared.Table("AutoAttack", rows);
        foreach (var w in aa.Warnings)
            Console.Error.WriteLine($"warning: {w}");
    }
}
