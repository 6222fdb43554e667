using ProxyRobust.Attacks;
using ProxyRobust.Certification;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Reporting;
using ProxyRobust.Training;
using TorchSharp;

namespace ProxyRobust.Experiments;

/// <summary>
/// One training run of an experiment, with the parameters it varies and how it is evaluated: PGD adversarial training
/// (evaluated with clean, PGD-20 and optionally AutoAttack accuracy), or Gaussian-noise training with noise
/// <paramref name="Sigma"/> (evaluated with clean accuracy and randomized-smoothing certificates). The proxy images
/// are drawn uniformly, or by <paramref name="Selection"/> (train --synthetic-select) from per-image
/// <paramref name="Scores"/> (adaptive sampling; random:F needs none).
/// </summary>
public sealed record ExperimentCell(
    string Name,
    int RealImages,
    int SyntheticImages,
    double Gamma,
    double Epsilon,
    int Seed,
    bool Gaussian = false,
    double Sigma = 0.25,
    string? ProxyName = null,
    string? ProxyStore = null,
    string? Selection = null,
    string? Scores = null
)
{
    /// <summary>The proxy source of a training run: the named store, else that many held-out real images, else
    /// none.</summary>
    public string? Synthetic => ProxyStore ?? (SyntheticImages > 0 ? $"holdout:{SyntheticImages}" : null);

    public CellParameters Parameters() =>
        new(
            RealImages,
            SyntheticImages,
            Gamma,
            Epsilon,
            Seed,
            Gaussian ? "gaussian" : "pgd",
            Gaussian ? Sigma : null,
            ProxyName,
            Selection
        );
}

/// <summary>Settings shared by every cell of an experiment (PGD adversarial training of the small CNN on Fashion-MNIST
/// by default).</summary>
public sealed record ExperimentSettings
{
    public string Data { get; init; } = DatasetLoader.FashionMnistName;
    public string Arch { get; init; } = "small-cnn";
    public int Epochs { get; init; } = 40;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 0.1;

    /// <summary>Epochs of linear learning-rate warm-up before the cosine decay (0: none). With 500 real images an
    /// epoch is only a few steps, and a full learning rate from the first step can throw a run into a constant
    /// predictor it never leaves.</summary>
    public double WarmupEpochs { get; init; }
    public int AttackSteps { get; init; } = 10;
    public int ValSize { get; init; } = 500;

    /// <summary>Test points for clean and PGD-20 accuracy (the same seeded points for every cell, so cells compare
    /// pairwise).</summary>
    public int EvalPoints { get; init; } = 1000;

    /// <summary>Of those, how many also get AutoAttack; 0 for none.</summary>
    public int AutoAttackPoints { get; init; }

    /// <summary>The AutoAttack version of the final test (standard, strong or fast).</summary>
    public AutoAttackVersion FinalAttack { get; init; } = AutoAttackVersion.Standard;

    /// <summary>Per-epoch validation attack of PGD cells: "pgd" (PGD-AttackSteps) or "fast" (AutoAttack
    /// fast).</summary>
    public string ValAttack { get; init; } = "pgd";

    /// <summary>Gaussian cells: how many of the test points are certified (CERTIFY, n0 = 100, alpha = 0.001), and with
    /// how many noise samples.</summary>
    public int CertifyPoints { get; init; }
    public int CertifySamples { get; init; } = 10_000;
    public int Threads { get; init; }
}

/// <summary>
/// A folder that holds everything needed to reproduce an experiment: experiment.json (command, version, settings, every
/// cell's parameters, training history and evaluation, including per-point outcomes), one run folder per cell
/// (cells/NAME: checkpoints, result.json, evaluation.json), log.txt (what ran when), and the report (report.md and PNG
/// plots) that
/// <see cref="ExperimentReport"/> rebuilds from experiment.json. Every step is resumable: a finished cell is never
/// redone.
/// </summary>
public static class Experiment
{
    public const string FileName = ExperimentRecord.FileName;

    public static string CellDir(string root, ExperimentCell cell) => Path.Combine(root, "cells", cell.Name);

    /// <summary>Appends a time-stamped message to the experiment's log.txt (the caller shows it too, if it
    /// wants).</summary>
    public static void Log(string root, string message)
    {
        Directory.CreateDirectory(root);
        File.AppendAllText(Path.Combine(root, "log.txt"), $"{DateTime.UtcNow:u} {message}\n");
    }

    /// <summary>Trains (or resumes, or skips when finished) and evaluates one cell; returns its record for
    /// experiment.json.</summary>
    public static CellRecord RunCell(
        string root,
        ExperimentSettings s,
        ExperimentCell cell,
        Action<string>? log = null,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default,
        IProgress<(string Phase, int Done, int Total)>? evaluation = null
    )
    {
        var dir = CellDir(root, cell);
        if (!File.Exists(Path.Combine(dir, TrainRunRecord.FileName)))
        {
            log?.Invoke(
                $"{cell.Name}: training ({cell.RealImages} real, {cell.SyntheticImages} proxy, {s.Epochs} epochs, "
                    + $"seed {cell.Seed})"
            );
            TrainRun.Execute(
                new TrainRunConfig
                {
                    Data = s.Data,
                    Arch = s.Arch,
                    TrainSize = cell.RealImages,
                    ValSize = s.ValSize,
                    EvalSize = s.EvalPoints,
                    DataSeed = 0,
                    Method = cell.Gaussian ? TrainMethod.Gaussian : TrainMethod.Pgd,
                    Sigma = cell.Sigma,
                    Epsilon = cell.Gaussian ? null : cell.Epsilon,
                    AttackSteps = s.AttackSteps,
                    ValAttack = s.ValAttack,
                    Synthetic = cell.Synthetic,
                    SyntheticScores = cell.Scores,
                    SyntheticSelection = cell.Selection,
                    Gamma = cell.Gamma,
                    OutputDir = dir,
                    Resume = true,
                    Options = new TrainOptions
                    {
                        Epochs = s.Epochs,
                        BatchSize = s.BatchSize,
                        LearningRate = s.LearningRate,
                        WarmupEpochs = s.WarmupEpochs,
                        Seed = cell.Seed,
                        CheckpointEverySteps = 50,
                    },
                },
                progress,
                cancel,
                evaluation
            );
        }
        else
            log?.Invoke($"{cell.Name}: trained (skipped)");
        var evaluationPath = Path.Combine(dir, CellEvaluation.FileName);
        if (!File.Exists(evaluationPath))
        {
            log?.Invoke($"{cell.Name}: evaluating");
            JsonFiles.Write(evaluationPath, Evaluate(dir, s, cell, evaluation, cancel));
        }
        return Record(root, cell)!;
    }

    /// <summary>A finished cell's record for experiment.json (null while it has not finished training and
    /// evaluation).</summary>
    public static CellRecord? Record(string root, ExperimentCell cell)
    {
        var dir = CellDir(root, cell);
        string resultPath = Path.Combine(dir, TrainRunRecord.FileName),
            evaluationPath = Path.Combine(dir, CellEvaluation.FileName);
        if (!File.Exists(resultPath) || !File.Exists(evaluationPath))
            return null;
        var result = JsonFiles.Read<TrainRunRecord>(resultPath);
        return new CellRecord(
            cell.Name,
            cell.Parameters(),
            Path.GetRelativePath(root, dir),
            result.Seconds,
            result.History,
            result.Test,
            JsonFiles.Read<CellEvaluation>(evaluationPath)
        );
    }

    /// <summary>Reads experiment.json (any schema version this build knows); one error naming the file
    /// otherwise.</summary>
    public static ExperimentRecord Read(string root)
    {
        var path = Path.Combine(root, FileName);
        if (!File.Exists(path))
            throw new DataFormatException(path, "no experiment.json here (run demo or sweep first)");
        var record = JsonFiles.Read<ExperimentRecord>(path);
        if (record.Cells is null || record.Settings is null)
            throw new DataFormatException(path, "no 'cells' or 'settings': not an experiment file");
        return record;
    }

    /// <summary>
    /// Refuses to mix cells of different settings in one folder: the settings recorded in an existing
    /// experiment.json must equal these (except threads).
    /// </summary>
    public static void CheckSameSettings(string root, ExperimentSettings settings)
    {
        var path = Path.Combine(root, FileName);
        if (!File.Exists(path))
            return;
        var recorded = JsonFiles.FromNode<ExperimentSettings>(JsonFiles.ReadObject(path)["settings"]);
        if (recorded is not null && recorded with { Threads = 0 } != settings with { Threads = 0 })
            throw new DataFormatException(
                path,
                "this folder holds an experiment with other settings; use another output folder (or delete it)"
            );
    }

    /// <summary>The same test points for every cell: clean and PGD-20 on EvalPoints, AutoAttack (FinalAttack) on the
    /// first AutoAttackPoints.</summary>
    private static CellEvaluation Evaluate(
        string dir,
        ExperimentSettings s,
        ExperimentCell cell,
        IProgress<(string Phase, int Done, int Total)>? progress,
        CancellationToken cancel
    )
    {
        using var model = Checkpoint.LoadClassifier(Path.Combine(dir, "final.json"));
        using var test = DatasetLoader.Load(s.Data, Split.Test);
        using var points = s.EvalPoints < test.Count ? test.Split(s.EvalPoints, 20221).Taken : test;
        if (cell.Gaussian)
            return EvaluateSmoothed(dir, model, points, s, cell, progress, cancel);
        var threat = new ThreatModel(Norm.Linf, cell.Epsilon);
        var pgd = RobustEvaluation.Evaluate(
            model,
            points,
            new Pgd(threat, 20, Pgd.DefaultStepSize(cell.Epsilon, 20)),
            250,
            torch.CPU,
            seed: 0,
            progress: progress.Phase("PGD-20"),
            cancel: cancel
        );
        AutoAttackEvaluation? autoAttack = null;
        if (s.AutoAttackPoints > 0)
        {
            using var subset = points.Select(Enumerable.Range(0, Math.Min(s.AutoAttackPoints, points.Count)).ToArray());
            var aa = new AutoAttack(threat, s.FinalAttack, seed: 0).Run(
                model,
                subset,
                torch.CPU,
                progress: progress,
                cancel: cancel,
                // an interrupted experiment continues its AutoAttack where it stopped
                statePath: Path.Combine(dir, "autoattack-state.json")
            );
            autoAttack = new AutoAttackEvaluation(
                aa.Total,
                aa.CleanAccuracy,
                aa.RobustAccuracy,
                Bits.Of(aa.Robust),
                aa.Stages.Sum(st => st.Seconds),
                aa.Stages.Select(st => new AutoAttackStageResult(st.Attack, st.RobustAfter, st.Seconds)).ToList()
            );
        }
        return new CellEvaluation(
            points.Count,
            pgd.Clean.Accuracy,
            Bits.Of(pgd.CleanHits),
            pgd.Robust!.Accuracy,
            pgd.Seconds,
            Bits.Of(pgd.RobustHits!),
            autoAttack
        );
    }

    /// <summary>
    /// Gaussian cells: clean accuracy of the base classifier, and CERTIFY on the first CertifyPoints test
    /// points (resumable: the certification log in the cell folder continues after an interruption).
    /// </summary>
    private static CellEvaluation EvaluateSmoothed(
        string dir,
        Models.Classifier model,
        ImageDataset points,
        ExperimentSettings s,
        ExperimentCell cell,
        IProgress<(string Phase, int Done, int Total)>? progress,
        CancellationToken cancel
    )
    {
        var clean = RobustEvaluation.Evaluate(
            model,
            points,
            null,
            250,
            torch.CPU,
            progress: progress.Phase("clean"),
            cancel: cancel
        );
        CertifyEvaluation? certify = null;
        if (s.CertifyPoints > 0)
        {
            using var subset = points.Select(Enumerable.Range(0, Math.Min(s.CertifyPoints, points.Count)).ToArray());
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var settings = new CertifySettings(cell.Sigma, 100, s.CertifySamples, 0.001);
            var (examples, _) = CertificationLog.Run(
                model,
                subset,
                settings,
                torch.CPU,
                Path.Combine(dir, "certify.tsv"),
                resume: true,
                progress.Phase("certify"),
                cancel
            );
            var summary = CertificationRun.Summarise(examples, cell.Sigma, 100, s.CertifySamples, 0.001);
            certify = new CertifyEvaluation(
                examples.Count,
                cell.Sigma,
                100,
                s.CertifySamples,
                0.001,
                summary.AverageCertifiedRadius,
                summary.AbstentionRate,
                clock.Elapsed.TotalSeconds,
                // per point: certified radius when correct, -1 when wrong or abstained (enough to rebuild any curve)
                examples.Select(e => e.Correct ? Math.Round(e.Radius, 5) : -1.0).ToArray()
            );
        }
        return new CellEvaluation(points.Count, clean.Clean.Accuracy, Bits.Of(clean.CleanHits), Certify: certify);
    }

    /// <summary>
    /// Gathers every planned cell that has finished (in this or another process sharing the folder) into
    /// experiment.json; returns their records.
    /// </summary>
    public static List<CellRecord> SaveFinished(
        string root,
        string kind,
        string command,
        ExperimentSettings settings,
        IReadOnlyList<ExperimentCell> planned
    )
    {
        var finished = planned.Select(c => Record(root, c)).OfType<CellRecord>().ToList();
        Save(root, kind, command, settings, planned, finished);
        return finished;
    }

    /// <summary>Writes experiment.json atomically: the command that ran, the version, settings and the cells gathered
    /// so far.</summary>
    public static void Save(
        string root,
        string kind,
        string command,
        ExperimentSettings settings,
        IEnumerable<ExperimentCell> planned,
        IEnumerable<CellRecord> cells
    )
    {
        Directory.CreateDirectory(root);
        JsonFiles.Write(
            Path.Combine(root, FileName),
            new ExperimentRecord(
                kind,
                command,
                typeof(Experiment).Assembly.GetName().Version?.ToString(),
                DateTime.UtcNow.ToString("u"),
                settings,
                planned.Select(c => new PlannedCell(c.Name, c.Parameters())).ToList(),
                cells.ToList()
            )
        );
    }
}
