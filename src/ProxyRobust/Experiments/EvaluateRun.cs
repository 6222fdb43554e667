using ProxyRobust.Attacks;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Native;
using ProxyRobust.Reporting;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Experiments;

public enum EvalAttack
{
    None,
    Pgd,
    Fgsm,
    AutoAttack,
}

/// <summary>What the eval verb asks for: a checkpoint, the points, an attack and where the results go.</summary>
public sealed record EvaluateRequest
{
    public required string Checkpoint { get; init; }
    public bool Ema { get; init; }
    public string? Data { get; init; }
    public Split Split { get; init; } = Split.Test;
    public string? Labels { get; init; }

    /// <summary>A seeded, class-balanced subset of this many points (null: all).</summary>
    public int? Examples { get; init; }
    public int Seed { get; init; }
    public int BatchSize { get; init; } = 256;
    public string Device { get; init; } = "cpu";
    public EvalAttack Attack { get; init; }
    public Norm Norm { get; init; } = Norm.Linf;
    public double? Epsilon { get; init; }
    public int Steps { get; init; } = 20;
    public int Restarts { get; init; } = 1;
    public double? StepSize { get; init; }
    public AttackLoss Loss { get; init; } = AttackLoss.CrossEntropy;
    public TargetChoice Targets { get; init; } = TargetChoice.None;
    public AutoAttackVersion Version { get; init; } = AutoAttackVersion.Standard;

    /// <summary>AutoAttack fast/strong: MALT's number of target classes and APGD-T iterations per target.</summary>
    public int MaltTargets { get; init; } = 5;
    public int MaltIterations { get; init; } = 100;

    /// <summary>AutoAttack: run only these components (null: all of the version).</summary>
    public IReadOnlyList<string>? Components { get; init; }

    /// <summary>Results as JSON (PGD: accuracies per class; AutoAttack: the report card).</summary>
    public string? Json { get; init; }

    /// <summary>AutoAttack: a report card (Markdown, JSON beside it) with clean, PGD-20 and every component on the same
    /// points.</summary>
    public string? Report { get; init; }
    public string? SaveAdversarial { get; init; }
    public string? SaveLogits { get; init; }
    public string? SavePoints { get; init; }

    /// <summary>AutoAttack: continue from the state kept beside the report (or JSON) after an interruption.</summary>
    public bool Resume { get; init; }

    /// <summary>Where AutoAttack keeps its state between batches: beside the report card or the JSON (null:
    /// nowhere).</summary>
    public string? StatePath => (Report ?? Json) is { } output ? output + ".autoattack-state.json" : null;
}

/// <summary>An accuracy with its Wilson 95% interval and its value per class (null for a class without
/// points).</summary>
public sealed record AccuracyRecord(
    double Accuracy,
    int Correct,
    int Total,
    double[] Wilson95,
    IReadOnlyDictionary<string, double?> PerClass
)
{
    public static AccuracyRecord Of(AccuracyResult a, IReadOnlyList<string> classNames) =>
        new(
            a.Accuracy,
            a.Correct,
            a.Total,
            [a.Wilson95.Low, a.Wilson95.High],
            Enumerable
                .Range(0, classNames.Count)
                .ToDictionary(
                    c => classNames[c],
                    c => a.TotalPerClass[c] == 0 ? (double?)null : (double)a.CorrectPerClass[c] / a.TotalPerClass[c]
                )
        );
}

/// <summary>eval --json without AutoAttack: clean and robust accuracy on the same points.</summary>
public sealed record EvaluationRecord(
    string Checkpoint,
    string Data,
    string Split,
    int Seed,
    AccuracyRecord Clean,
    string? Attack,
    AccuracyRecord? Robust,
    double Seconds,
    OneDnnState? OneDnn = null
);

/// <summary>The outcome of the eval verb: the model and points, and either the plain evaluation or AutoAttack's
/// card.</summary>
public sealed record EvaluateOutcome(
    string Model,
    string Data,
    int Points,
    IReadOnlyList<string> ClassNames,
    RobustResult? Plain,
    RobustnessCard? Card
);

/// <summary>The eval verb as one library call: clean accuracy, PGD/FGSM, or AutoAttack with a report card.</summary>
public static class EvaluateRun
{
    /// <summary>The attack a request describes (null: none; AutoAttack is run by <see cref="Execute"/>
    /// itself).</summary>
    public static IAttack? Attack(EvaluateRequest r)
    {
        if (r.Attack is EvalAttack.None or EvalAttack.AutoAttack)
            return null;
        var threat = Threat(r);
        return r.Attack == EvalAttack.Fgsm
            ? new Fgsm(threat)
            : new Pgd(
                threat,
                r.Steps,
                r.StepSize ?? Pgd.DefaultStepSize(threat.Epsilon, r.Steps),
                r.Restarts,
                Loss: r.Loss
            )
            {
                Targets = r.Targets,
            };
    }

    public static ThreatModel Threat(EvaluateRequest r) =>
        r.Epsilon is { } e && e > 0
            ? new ThreatModel(r.Norm, e)
            : throw new ArgumentException("an attack needs a positive epsilon");

    public static EvaluateOutcome Execute(
        EvaluateRequest r,
        IProgress<(string Phase, int Done, int Total)>? progress = null,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        if (r.Resume && r.StatePath is null)
            throw new ArgumentException(
                "resuming AutoAttack needs a report or JSON output: its state is kept beside it"
            );
        var attack = Attack(r);
        var device = torch.device(r.Device);
        using var opened = ModelAndData.Open(
            r.Checkpoint,
            r.Ema,
            r.Data,
            r.Split,
            r.Labels,
            r.Examples,
            r.Seed,
            device
        );
        var (model, points) = (opened.Model, opened.Points);
        if (r.SavePoints is { } pointsPath && job.IsRoot)
            opened.SavePoints(pointsPath);
        if (r.Attack == EvalAttack.AutoAttack)
            return new EvaluateOutcome(
                model.Spec.ToString(),
                points.Source,
                points.Count,
                points.ClassNames,
                null,
                RunAutoAttack(r, opened, device, progress, cancel, job)
            );

        var result = RobustEvaluation.Evaluate(
            model,
            points,
            attack,
            r.BatchSize,
            device,
            r.Seed,
            keepAdversarial: r.SaveAdversarial is not null,
            progress.Phase(attack is null ? "clean" : attack.Name.Split(' ')[0]),
            cancel,
            job
        );
        var outcome = new EvaluateOutcome(
            model.Spec.ToString(),
            points.Source,
            points.Count,
            points.ClassNames,
            result,
            null
        );
        if (!job.IsRoot) // rank 0 writes the job's result
            return outcome;
        if (r.SaveAdversarial is { } advPath && result.Adversarial is { } adv)
            opened.WriteImages(advPath, adv);
        if (r.Json is { } path)
            JsonFiles.Write(
                path,
                new EvaluationRecord(
                    r.Checkpoint,
                    points.Source,
                    r.Split.ToString().ToLowerInvariant(),
                    r.Seed,
                    AccuracyRecord.Of(result.Clean, points.ClassNames),
                    result.AttackName,
                    result.Robust is null ? null : AccuracyRecord.Of(result.Robust, points.ClassNames),
                    result.Seconds,
                    TorchRuntime.OneDnn
                )
            );
        return outcome;
    }

    private static RobustnessCard? RunAutoAttack(
        EvaluateRequest r,
        ModelAndData opened,
        Device device,
        IProgress<(string Phase, int Done, int Total)>? progress,
        CancellationToken cancel,
        IRanks job
    )
    {
        var (model, points) = (opened.Model, opened.Points);
        var threat = Threat(r);
        var runner = new AutoAttack(threat, r.Version, r.Seed, r.BatchSize, r.MaltTargets, r.MaltIterations);
        var known = runner.Components(points.NumClasses).Select(c => c.Key).ToList();
        if (r.Components?.FirstOrDefault(o => !known.Contains(o)) is { } unknown)
            throw new ArgumentException(
                $"'{unknown}' is not part of AutoAttack {Name(r.Version)} ({string.Join(", ", known)})"
                    + (unknown is "apgd-malt" or "apgd-pm" ? $"; --version strong has {unknown}" : "")
            );
        if (!r.Resume && r.StatePath is { } stale && job.IsRoot)
            AutoAttackState.Delete(stale); // a new run, not a continuation
        job.Barrier(); // no rank reads a state rank 0 is about to delete

        RobustResult? pgd = null;
        if (r.Report is not null)
            pgd = RobustEvaluation.Evaluate(
                model,
                points,
                new Pgd(threat, 20, Pgd.DefaultStepSize(threat.Epsilon, 20)),
                r.BatchSize,
                device,
                r.Seed,
                progress: progress.Phase("PGD-20"),
                cancel: cancel,
                ranks: job
            );
        var result = runner.Run(model, points, device, r.Components, progress, cancel, r.StatePath, job);
        if (!job.IsRoot)
            return null;

        if (r.SaveAdversarial is { } advPath)
            opened.WriteImages(advPath, result.Adversarial);
        if (r.SaveLogits is { } logitsPath)
            SaveLogits(model, result.Adversarial, points, r.BatchSize, device, logitsPath);
        var card = new RobustnessCard(
            model.Spec.ToString(),
            r.Checkpoint,
            $"{points.Source} ({r.Split.ToString().ToLowerInvariant()})",
            threat.ToString(),
            threat.Norm == Norm.Linf ? "linf" : "l2",
            threat.Epsilon,
            Name(r.Version),
            r.Seed,
            new CardAutoAttack(
                result.Total,
                result.CleanCorrect,
                result
                    .Stages.Select(st => new CardStage(
                        st.Attack,
                        st.Description,
                        st.RobustAfter,
                        st.Attacked,
                        st.Seconds,
                        st.Broken
                    ))
                    .ToList(),
                result.Warnings,
                Bits.Of(result.Robust)
            ),
            pgd?.Robust is { } pr ? new CardPgd(pgd.AttackName!, pr.Correct, pgd.Seconds) : null
        );
        if (r.Json is { } path)
            JsonFiles.WriteObject(path, card.ToJson());
        if (r.Report is { } md)
        {
            AtomicFile.WriteAllText(md, card.ToMarkdown());
            JsonFiles.WriteObject(Path.ChangeExtension(md, ".json"), card.ToJson());
        }
        return card;
    }

    public static string Name(AutoAttackVersion v) => v.ToString().ToLowerInvariant();

    /// <summary>The model's logits on the returned examples (float32 N x K .npy), to re-check them in another
    /// framework.</summary>
    private static void SaveLogits(
        Models.Classifier model,
        float[] adversarialNhwc,
        ImageDataset points,
        int batchSize,
        Device device,
        string path
    )
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var adv = tensor(adversarialNhwc)
            .view(points.Count, points.Height, points.Width, points.Channels)
            .permute(0, 3, 1, 2)
            .to(device);
        var logits = new List<Tensor>();
        for (long s = 0; s < points.Count; s += batchSize)
            logits.Add(model.call(adv.narrow(0, s, Math.Min(batchSize, points.Count - s))).cpu());
        Npy.WriteFloats(path, [points.Count, model.Spec.NumClasses], cat(logits).contiguous().data<float>().ToArray());
    }
}
