using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Attacks;
using ProxyRobust.Data;
using ProxyRobust.Reporting;
using ProxyRobust.Training;
using TorchSharp;
using ProxyRobust.Core;

namespace ProxyRobust.Experiments;

/// <summary>
/// One training run of an experiment, with the parameters it varies and how it is evaluated: PGD adversarial training
/// (evaluated with clean, PGD-20 and optionally AutoAttack accuracy), or Gaussian-noise training with noise
/// <paramref name="Sigma"/> (evaluated with clean accuracy and randomized-smoothing certificates).
/// </summary>
public sealed record ExperimentCell(string Name, int RealImages, int SyntheticImages, double Gamma, double Epsilon, int Seed,
                                    bool Gaussian = false, double Sigma = 0.25)
{
    public JsonObject Parameters()
    {
        var node = new JsonObject
        {
            ["real"] = RealImages, ["synthetic"] = SyntheticImages, ["gamma"] = Gamma, ["eps"] = Epsilon, ["seed"] = Seed,
            ["method"] = Gaussian ? "gaussian" : "pgd",
        };
        if (Gaussian) node["sigma"] = Sigma;
        return node;
    }
}

/// <summary>Settings shared by every cell of an experiment (PGD adversarial training of the small CNN on Fashion-MNIST by default).</summary>
public sealed record ExperimentSettings
{
    public string Data { get; init; } = DatasetLoader.FashionMnistName;
    public string Arch { get; init; } = "small-cnn";
    public int Epochs { get; init; } = 40;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 0.1;
    public int AttackSteps { get; init; } = 10;
    public int ValSize { get; init; } = 500;
    /// <summary>Test points for clean and PGD-20 accuracy (the same seeded points for every cell, so cells compare pairwise).</summary>
    public int EvalPoints { get; init; } = 1000;
    /// <summary>Of those, how many also get AutoAttack (standard); 0 for none.</summary>
    public int AutoAttackPoints { get; init; }
    /// <summary>Gaussian cells: how many of the test points are certified (CERTIFY, n0 = 100, alpha = 0.001), and with how many noise samples.</summary>
    public int CertifyPoints { get; init; }
    public int CertifySamples { get; init; } = 10_000;
    public int Threads { get; init; }
}

/// <summary>
/// A folder that holds everything needed to reproduce an experiment: experiment.json (command, version, settings, every
/// cell's parameters, training history and evaluation, including per-point outcomes), one run folder per cell
/// (cells/NAME: checkpoints, result.json, evaluation.json), log.txt (what ran when), and the report (report.md and PNG plots) that
/// <see cref="ExperimentReport"/> rebuilds from experiment.json. Every step is resumable: a finished cell is never redone.
/// </summary>
public static class Experiment
{
    public const string FileName = "experiment.json";

    public static string CellDir(string root, ExperimentCell cell) => Path.Combine(root, "cells", cell.Name);

    /// <summary>Prints a progress message and appends it, time-stamped, to the experiment's log.txt.</summary>
    public static Action<string> Logger(string root) => message =>
    {
        Console.WriteLine(message);
        Directory.CreateDirectory(root);
        File.AppendAllText(Path.Combine(root, "log.txt"), $"{DateTime.UtcNow:u} {message}\n");
    };

    /// <summary>Trains (or resumes, or skips when finished) and evaluates one cell; returns its record for experiment.json.</summary>
    public static JsonObject RunCell(string root, ExperimentSettings s, ExperimentCell cell, Action<string>? log = null,
                                     IProgress<TrainProgress>? progress = null, CancellationToken cancel = default)
    {
        var dir = CellDir(root, cell);
        var resultPath = Path.Combine(dir, "result.json");
        if (!File.Exists(resultPath))
        {
            log?.Invoke($"{cell.Name}: training ({cell.RealImages} real, {cell.SyntheticImages} proxy, {s.Epochs} epochs, seed {cell.Seed})");
            TrainRun.Execute(new TrainRunConfig
            {
                Data = s.Data, Arch = s.Arch, TrainSize = cell.RealImages, ValSize = s.ValSize, EvalSize = s.EvalPoints, DataSeed = 0,
                Method = cell.Gaussian ? TrainMethod.Gaussian : TrainMethod.Pgd, Sigma = cell.Sigma,
                Epsilon = cell.Gaussian ? null : cell.Epsilon, AttackSteps = s.AttackSteps,
                Synthetic = cell.SyntheticImages > 0 ? $"holdout:{cell.SyntheticImages}" : null, Gamma = cell.Gamma,
                OutputDir = dir, Resume = true,
                Options = new TrainOptions
                {
                    Epochs = s.Epochs, BatchSize = s.BatchSize, LearningRate = s.LearningRate, Seed = cell.Seed, CheckpointEverySteps = 50,
                },
            }, progress, cancel);
        }
        else log?.Invoke($"{cell.Name}: trained (skipped)");
        var evaluationPath = Path.Combine(dir, "evaluation.json");
        if (!File.Exists(evaluationPath))
        {
            log?.Invoke($"{cell.Name}: evaluating");
            AtomicFile.WriteAllText(evaluationPath, Evaluate(dir, s, cell, cancel).ToJsonString(Checkpoint.Json));
        }
        return Record(root, cell)!;
    }

    /// <summary>A finished cell's record for experiment.json (null while it has not finished training and evaluation).</summary>
    public static JsonObject? Record(string root, ExperimentCell cell)
    {
        var dir = CellDir(root, cell);
        string resultPath = Path.Combine(dir, "result.json"), evaluationPath = Path.Combine(dir, "evaluation.json");
        if (!File.Exists(resultPath) || !File.Exists(evaluationPath)) return null;
        var result = JsonNode.Parse(File.ReadAllText(resultPath))!.AsObject();
        return new JsonObject
        {
            ["name"] = cell.Name, ["parameters"] = cell.Parameters(), ["folder"] = Path.GetRelativePath(root, dir),
            ["seconds"] = result["seconds"]?.DeepClone(), ["history"] = result["history"]?.DeepClone(), ["test"] = result["test"]?.DeepClone(),
            ["evaluation"] = JsonNode.Parse(File.ReadAllText(evaluationPath)),
        };
    }

    /// <summary>
    /// Refuses to mix cells of different settings in one folder: the settings recorded in an existing experiment.json must
    /// equal these (except threads).
    /// </summary>
    public static void CheckSameSettings(string root, ExperimentSettings settings)
    {
        var path = Path.Combine(root, FileName);
        if (!File.Exists(path)) return;
        var recorded = JsonNode.Parse(File.ReadAllText(path))?["settings"]?.Deserialize<ExperimentSettings>();
        if (recorded is not null && recorded with { Threads = 0 } != settings with { Threads = 0 })
            throw new DataFormatException(path, "this folder holds an experiment with other settings; use another --out (or delete the folder)");
    }

    /// <summary>The same test points for every cell: clean and PGD-20 on EvalPoints, AutoAttack standard on the first AutoAttackPoints.</summary>
    private static JsonObject Evaluate(string dir, ExperimentSettings s, ExperimentCell cell, CancellationToken cancel)
    {
        using var model = Checkpoint.LoadClassifier(Path.Combine(dir, "final.json"));
        using var test = DatasetLoader.Load(s.Data, Split.Test);
        using var points = s.EvalPoints < test.Count ? test.Split(s.EvalPoints, 20221).Taken : test;
        if (cell.Gaussian) return EvaluateSmoothed(model, points, s, cell, cancel);
        var threat = new ThreatModel(Norm.Linf, cell.Epsilon);
        var pgd = RobustEvaluation.Evaluate(model, points, new Pgd(threat, 20, Pgd.DefaultStepSize(cell.Epsilon, 20)), 250, torch.CPU,
                                            seed: 0, cancel: cancel);
        var node = new JsonObject
        {
            ["points"] = points.Count, ["clean"] = pgd.Clean.Accuracy, ["pgd20"] = pgd.Robust!.Accuracy, ["pgdSeconds"] = pgd.Seconds,
            ["cleanHits"] = Bits(pgd.CleanHits), ["pgd20Hits"] = Bits(pgd.RobustHits!),
        };
        if (s.AutoAttackPoints > 0)
        {
            using var subset = points.Select(Enumerable.Range(0, Math.Min(s.AutoAttackPoints, points.Count)).ToArray());
            var aa = new AutoAttack(threat, AutoAttackVersion.Standard, seed: 0).Run(model, subset, torch.CPU, cancel: cancel);
            node["autoattack"] = new JsonObject
            {
                ["points"] = aa.Total, ["clean"] = aa.CleanAccuracy, ["robust"] = aa.RobustAccuracy, ["hits"] = Bits(aa.Robust),
                ["seconds"] = aa.Stages.Sum(st => st.Seconds),
                ["stages"] = new JsonArray(aa.Stages.Select(st => (JsonNode)new JsonObject
                {
                    ["attack"] = st.Attack, ["robustAfter"] = st.RobustAfter, ["seconds"] = st.Seconds,
                }).ToArray()),
            };
        }
        return node;
    }

    /// <summary>Gaussian cells: clean accuracy of the base classifier, and CERTIFY on the first CertifyPoints test points.</summary>
    private static JsonObject EvaluateSmoothed(Models.Classifier model, ImageDataset points, ExperimentSettings s, ExperimentCell cell,
                                               CancellationToken cancel)
    {
        var clean = RobustEvaluation.Evaluate(model, points, null, 250, torch.CPU, cancel: cancel);
        var node = new JsonObject { ["points"] = points.Count, ["clean"] = clean.Clean.Accuracy, ["cleanHits"] = Bits(clean.CleanHits) };
        if (s.CertifyPoints > 0)
        {
            using var subset = points.Select(Enumerable.Range(0, Math.Min(s.CertifyPoints, points.Count)).ToArray());
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var examples = Certification.CertificationRun.Certify(model, subset, cell.Sigma, 100, s.CertifySamples, 0.001, 100, torch.CPU,
                                                                  seed: 0, cancel).ToList();
            var summary = Certification.CertificationRun.Summarise(examples, cell.Sigma, 100, s.CertifySamples, 0.001);
            node["certify"] = new JsonObject
            {
                ["points"] = examples.Count, ["sigma"] = cell.Sigma, ["n0"] = 100, ["n"] = s.CertifySamples, ["alpha"] = 0.001,
                ["averageCertifiedRadius"] = summary.AverageCertifiedRadius, ["abstentionRate"] = summary.AbstentionRate,
                ["seconds"] = clock.Elapsed.TotalSeconds,
                // per point: certified radius when correct, -1 when wrong or abstained (enough to rebuild any curve)
                ["radii"] = new JsonArray(examples.Select(e => (JsonNode)(e.Correct ? Math.Round(e.Radius, 5) : -1.0)).ToArray()),
            };
        }
        return node;
    }

    /// <summary>Per-point outcomes as a compact string of 0/1 (readable, diffable, and small in JSON).</summary>
    public static string Bits(IEnumerable<bool> hits) => string.Concat(hits.Select(h => h ? '1' : '0'));

    public static bool[] ParseBits(string? bits) => bits is null ? [] : bits.Select(c => c == '1').ToArray();

    /// <summary>
    /// Gathers every planned cell that has finished (in this or another process sharing the folder) into experiment.json;
    /// returns their records.
    /// </summary>
    public static List<JsonObject> SaveFinished(string root, string kind, string command, ExperimentSettings settings,
                                                IReadOnlyList<ExperimentCell> planned)
    {
        var finished = planned.Select(c => Record(root, c)).OfType<JsonObject>().ToList();
        Save(root, kind, command, settings, planned, finished);
        return finished;
    }

    /// <summary>Writes experiment.json atomically: the command that ran, the version, settings and the cells gathered so far.</summary>
    public static void Save(string root, string kind, string command, ExperimentSettings settings, IEnumerable<ExperimentCell> planned,
                            IEnumerable<JsonObject> cells)
    {
        var node = new JsonObject
        {
            ["kind"] = kind, ["command"] = command, ["version"] = typeof(Experiment).Assembly.GetName().Version?.ToString(),
            ["updated"] = DateTime.UtcNow.ToString("u"), ["settings"] = JsonSerializer.SerializeToNode(settings),
            ["planned"] = new JsonArray(planned.Select(c => (JsonNode)new JsonObject { ["name"] = c.Name, ["parameters"] = c.Parameters() }).ToArray()),
            ["cells"] = new JsonArray(cells.Select(c => c.DeepClone()).ToArray()),
        };
        Directory.CreateDirectory(root);
        AtomicFile.WriteAllText(Path.Combine(root, FileName), node.ToJsonString(Checkpoint.Json));
    }
}
