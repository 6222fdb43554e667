using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Models;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>
/// Everything about a run's progress that a resumed run must get back, and how it goes into and comes out of the
/// checkpoint's JSON: the step, the running sums of the current epoch, the best validation score so far, the history.
/// </summary>
public sealed class TrainingState
{
    public long Step { get; set; }
    public double SecondsBefore { get; init; }
    public double EpochLoss { get; set; }
    public long EpochCorrect { get; set; }
    public long EpochSeen { get; set; }
    public double? BestScore { get; set; }
    public int? BestEpoch { get; set; }
    public List<EpochMetrics> History { get; init; } = [];

    public void AddBatch(float loss, long correct, long seen)
    {
        EpochLoss += loss * seen;
        EpochCorrect += correct;
        EpochSeen += seen;
    }

    public EpochMetrics EndEpoch(int epoch, Validation? validation, double seconds)
    {
        var metrics = new EpochMetrics(
            epoch,
            EpochLoss / EpochSeen,
            (double)EpochCorrect / EpochSeen,
            validation?.Clean,
            validation?.Robust,
            seconds
        );
        History.Add(metrics);
        EpochLoss = 0;
        EpochCorrect = 0;
        EpochSeen = 0;
        return metrics;
    }

    /// <summary>Whether <paramref name="validation"/> is the best so far (then it becomes the best).</summary>
    public bool IsNewBest(Validation? validation, int epoch)
    {
        if (validation is null || (BestScore is not null && validation.Score <= BestScore))
            return false;
        BestScore = validation.Score;
        BestEpoch = epoch;
        return true;
    }

    /// <summary>The checkpoint's record: the run's description plus this state.</summary>
    public JsonObject ToRecord(string objective, TrainOptions options, double secondsSoFar, JsonObject? description)
    {
        var run = description?.DeepClone().AsObject() ?? new JsonObject();
        run["objective"] = objective;
        run["options"] = JsonFiles.ToNode(options);
        run["step"] = Step;
        run["seconds"] = secondsSoFar;
        run["epochPartial"] = new JsonObject
        {
            ["loss"] = EpochLoss,
            ["correct"] = EpochCorrect,
            ["seen"] = EpochSeen,
        };
        run["bestScore"] = BestScore;
        run["bestEpoch"] = BestEpoch;
        run["history"] = JsonFiles.ToNode(History);
        return run;
    }

    /// <summary>
    /// Loads OUT/last.* into the model, its EMA copy and the optimiser, after checking that it was written for the same
    /// architecture and training options, and returns the state to continue from.
    /// </summary>
    public static TrainingState Restore(string stem, Classifier model, Classifier? ema, Sgd sgd, TrainOptions options)
    {
        var run = Checkpoint.ReadRun(stem);
        var spec = Checkpoint.ReadArch(run, stem);
        if (!spec.Equals(model.Spec))
            throw new CheckpointException(
                Checkpoint.JsonPath(stem),
                $"was written for {spec}, this run trains {model.Spec}"
            );
        var saved = JsonFiles.FromNode<TrainOptions>(run["options"]);
        if (
            saved is not null
            && saved with
            {
                CheckpointEverySteps = 0,
                Device = "",
            } != options with { CheckpointEverySteps = 0, Device = "" }
        )
            throw new CheckpointException(
                Checkpoint.JsonPath(stem),
                "was written with different training options; resume with the same options or start a new output folder"
            );
        var tensors = Checkpoint.ReadTensors(stem, run);
        try
        {
            Checkpoint.LoadInto(model, tensors, "", Checkpoint.WeightsPath(stem));
            if (ema is not null)
                Checkpoint.LoadInto(ema, tensors, Checkpoint.EmaPrefix, Checkpoint.WeightsPath(stem));
            using var noGrad = no_grad();
            foreach (var (name, buffer) in sgd.Buffers())
                if (tensors.TryGetValue(Checkpoint.MomentumPrefix + name, out var m))
                    buffer.copy_(m);
                else
                    throw new CheckpointException(
                        Checkpoint.WeightsPath(stem),
                        $"optimizer state for '{name}' is missing"
                    );
        }
        finally
        {
            foreach (var t in tensors.Values)
                t.Dispose();
        }
        var partial = run["epochPartial"];
        return new TrainingState
        {
            Step = (long?)run["step"] ?? 0,
            SecondsBefore = (double?)run["seconds"] ?? 0,
            EpochLoss = (double?)partial?["loss"] ?? 0,
            EpochCorrect = (long?)partial?["correct"] ?? 0,
            EpochSeen = (long?)partial?["seen"] ?? 0,
            BestScore = (double?)run["bestScore"],
            BestEpoch = (int?)run["bestEpoch"],
            History = JsonFiles.FromNode<List<EpochMetrics>>(run["history"]) ?? [],
        };
    }
}
