using System.Text.Json.Serialization;
using ProxyRobust.Core;
using ProxyRobust.Models;
using ProxyRobust.Native;
using ProxyRobust.Training;

namespace ProxyRobust.Experiments;

// The results files, as typed records (written and read through Core.JsonFiles: camelCase, a schema version in each).

/// <summary>Clean and robust test accuracy of one set of weights (last epoch or best validation epoch), with Wilson 95%
/// intervals.</summary>
public sealed record TestMetrics(
    string Weights,
    int? Epoch,
    int Points,
    double Clean,
    double[] CleanWilson95,
    double? Robust = null,
    double[]? RobustWilson95 = null,
    string? Attack = null
);

public sealed record TestResults(TestMetrics? Last, TestMetrics? Best);

/// <summary>
/// What a training run is (written into its checkpoints and its result.json): the configuration (training
/// options apart, under "options"), the method, the threat model, the data it saw and the version that ran it.
/// </summary>
public sealed record RunDescription(
    TrainRunConfig Config,
    string Method,
    string? Threat,
    int TrainImages,
    int? ValImages,
    int? SyntheticImages,
    int? EvalImages,
    IReadOnlyList<string> ClassNames,
    string? Version
);

/// <summary>
/// A training run's result.json: its description (flat, as in its checkpoints), architecture, options,
/// per-epoch history, time and test metrics, and whether libtorch's oneDNN kernels ran (times and the last digits
/// are comparable only between runs with the same kernels; see OneDnnGuard).
/// </summary>
public sealed record TrainRunRecord(
    TrainRunConfig Config,
    string Method,
    string? Threat,
    int TrainImages,
    int? ValImages,
    int? SyntheticImages,
    int? EvalImages,
    IReadOnlyList<string> ClassNames,
    string? Version,
    ArchSpec Arch,
    TrainOptions Options,
    IReadOnlyList<EpochMetrics> History,
    double Seconds,
    TestResults Test,
    ParallelTraining? Parallel = null,
    OneDnnState? OneDnn = null
)
{
    public const string FileName = "result.json";

    public static TrainRunRecord Of(
        RunDescription d,
        ArchSpec arch,
        TrainOptions options,
        IReadOnlyList<EpochMetrics> history,
        double seconds,
        TestResults test,
        ParallelTraining? parallel = null
    ) =>
        new(
            d.Config,
            d.Method,
            d.Threat,
            d.TrainImages,
            d.ValImages,
            d.SyntheticImages,
            d.EvalImages,
            d.ClassNames,
            d.Version,
            arch,
            options,
            history,
            seconds,
            test,
            parallel,
            TorchRuntime.OneDnn
        );
}

/// <summary>What an experiment cell varies. <see cref="Sigma"/> is set for Gaussian-noise cells only,
/// <see cref="Selection"/> for cells that draw their proxy images by score or from a random subset.</summary>
public sealed record CellParameters(
    int Real,
    int Synthetic,
    double Gamma,
    double Eps,
    int Seed,
    string Method,
    double? Sigma = null,
    string? Proxy = null,
    string? Selection = null
);

public sealed record PlannedCell(string Name, CellParameters Parameters);

public sealed record AutoAttackStageResult(string Attack, int RobustAfter, double Seconds);

/// <summary>AutoAttack on the first points of a cell's test points; <see cref="Hits"/>: per point, 1 when still
/// robust.</summary>
public sealed record AutoAttackEvaluation(
    int Points,
    double Clean,
    double Robust,
    string Hits,
    double Seconds,
    IReadOnlyList<AutoAttackStageResult> Stages
);

/// <summary>CERTIFY on the first points; <see cref="Radii"/>: per point, the certified radius when correct, else
/// -1.</summary>
public sealed record CertifyEvaluation(
    int Points,
    double Sigma,
    int N0,
    int N,
    double Alpha,
    double AverageCertifiedRadius,
    double AbstentionRate,
    double Seconds,
    double[] Radii
);

/// <summary>
/// A cell's evaluation.json: clean accuracy (and PGD-20 for adversarially trained cells) on the experiment's
/// test points, per-point outcomes as strings of 0/1 (readable, diffable, small), and AutoAttack or certificates when
/// asked for.
/// </summary>
public sealed record CellEvaluation(
    int Points,
    double Clean,
    string CleanHits,
    double? Pgd20 = null,
    double? PgdSeconds = null,
    string? Pgd20Hits = null,
    AutoAttackEvaluation? AutoAttack = null,
    CertifyEvaluation? Certify = null
)
{
    public const string FileName = "evaluation.json";
}

/// <summary>A finished cell as experiment.json holds it: what it varied, where its run folder is, how it trained and
/// tested.</summary>
public sealed record CellRecord(
    string Name,
    CellParameters Parameters,
    string Folder,
    double? Seconds,
    IReadOnlyList<EpochMetrics> History,
    TestResults? Test,
    CellEvaluation Evaluation
)
{
    [JsonIgnore]
    public bool IsGaussian => Parameters.Method == "gaussian";
}

/// <summary>experiment.json: the command that ran, the version, the settings, the planned cells and the finished
/// ones.</summary>
public sealed record ExperimentRecord(
    string Kind,
    string Command,
    string? Version,
    string Updated,
    ExperimentSettings Settings,
    IReadOnlyList<PlannedCell> Planned,
    IReadOnlyList<CellRecord> Cells
)
{
    public const string FileName = "experiment.json";
}
