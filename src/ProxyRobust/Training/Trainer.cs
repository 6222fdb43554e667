using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>Hyper-parameters of one training run. Defaults follow the paper's code (SGD 0.1, momentum 0.9, wd 5e-4, cosine).</summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 10;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 0.1;
    public double Momentum { get; init; } = 0.9;
    public double WeightDecay { get; init; } = 5e-4;
    public bool Nesterov { get; init; }
    public double WarmupEpochs { get; init; }
    public double LabelSmoothing { get; init; }
    /// <summary>EMA decay of the weights, or null for no EMA.</summary>
    public double? EmaDecay { get; init; }
    public int Seed { get; init; }
    public AugmentOptions Augment { get; init; } = AugmentOptions.None;
    /// <summary>Save a resumable checkpoint every this many optimizer steps (and at every epoch end).</summary>
    public int CheckpointEverySteps { get; init; } = 200;
    /// <summary>Evaluate on the evaluation set every this many epochs (0: only at the end).</summary>
    public int EvalEveryEpochs { get; init; } = 1;
    public string Device { get; init; } = "cpu";
}

public sealed record TrainProgress(int Epoch, int Epochs, long Step, long TotalSteps, double Loss, double Accuracy,
                                   double ImagesPerSecond, double LearningRate);

public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double? EvalAccuracy, double Seconds);

public sealed record TrainResult(string OutputDir, IReadOnlyList<EpochMetrics> History, AccuracyResult? FinalEval, double Seconds);

/// <summary>
/// Runs a training loop with any <see cref="ITrainingObjective"/>: seeded batches, SGD with a per-iteration cosine schedule,
/// optional EMA, checkpoints every few steps (OUT/last.*), final weights (OUT/final.*). With resume it continues from
/// OUT/last.* and ends with the same weights as an uninterrupted run: the batch order and augmentation depend only on
/// (seed, epoch, batch), and torch's generator is re-seeded from (seed, step) before every step.
/// </summary>
public sealed class Trainer(TrainOptions options, ITrainingObjective objective)
{
    public TrainOptions Options => options;

    public TrainResult Run(Classifier model, ImageDataset train, ImageDataset? evalData, string outputDir, bool resume,
                           IProgress<TrainProgress>? progress = null, CancellationToken cancel = default,
                           JsonObject? description = null)
    {
        var device = torch.device(options.Device);
        model.to(device);
        Classifier? emaModel = null;
        if (options.EmaDecay is not null)
        {
            emaModel = model.Spec.Create();
            emaModel.to(device);
            emaModel.load_state_dict(model.state_dict());
            emaModel.eval();
        }
        var ema = emaModel is null ? null : new WeightAverage(model, emaModel, options.EmaDecay!.Value);
        using var sgd = new Sgd(model, options.Momentum, options.WeightDecay, options.Nesterov);

        var sampler = new BatchSampler(train, options.BatchSize, shuffle: true, options.Augment, options.Seed, dropLast: false);
        long stepsPerEpoch = sampler.BatchesPerEpoch, totalSteps = stepsPerEpoch * options.Epochs;
        var schedule = new CosineSchedule(options.LearningRate, totalSteps, (long)Math.Round(options.WarmupEpochs * stepsPerEpoch));

        var history = new List<EpochMetrics>();
        long step = 0;
        double secondsBefore = 0;
        var last = Path.Combine(outputDir, "last");
        if (resume && File.Exists(Checkpoint.JsonPath(last)))
            (step, secondsBefore) = Restore(last, model, emaModel, sgd, history);
        else
            Directory.CreateDirectory(outputDir);

        var clock = Stopwatch.StartNew();
        var epochLoss = 0.0; var epochCorrect = 0L; var epochSeen = 0L;
        var epochClock = Stopwatch.StartNew();
        var rateClock = Stopwatch.StartNew(); long rateImages = 0;
        AccuracyResult? lastEval = null;
        model.train();

        while (step < totalSteps)
        {
            int epoch = (int)(step / stepsPerEpoch);
            int batchInEpoch = (int)(step % stepsPerEpoch);
            foreach (var batch in sampler.Epoch(epoch, batchInEpoch))
            {
                cancel.ThrowIfCancellationRequested();
                double lr = schedule.At(step);
                using (var scope = NewDisposeScope())
                {
                    torch.manual_seed(Seeds.Derive(options.Seed, step, 0x57E9));
                    var (x, y) = batch.ToTensors(device);
                    var (loss, logits) = objective.Loss(model, x, y);
                    model.zero_grad();
                    loss.backward();
                    sgd.Step(lr);
                    ema?.Update();
                    float lossValue = loss.item<float>();
                    if (!float.IsFinite(lossValue))
                        throw new InvalidOperationException($"training diverged at step {step} (loss {lossValue}); lower the learning rate");
                    epochLoss += lossValue * batch.Count;
                    epochCorrect += logits.argmax(1).eq(y).sum().item<long>();
                }
                epochSeen += batch.Count; rateImages += batch.Count;
                step++;
                progress?.Report(new TrainProgress(epoch + 1, options.Epochs, step, totalSteps, epochLoss / epochSeen,
                    (double)epochCorrect / epochSeen, rateImages / Math.Max(1e-9, rateClock.Elapsed.TotalSeconds), lr));
                bool epochEnd = step % stepsPerEpoch == 0;
                if (epochEnd)
                {
                    double? evalAcc = null;
                    bool evalNow = evalData is not null && (options.EvalEveryEpochs > 0 && (epoch + 1) % options.EvalEveryEpochs == 0 || step == totalSteps);
                    if (evalNow)
                    {
                        lastEval = Evaluation.CleanAccuracy(emaModel ?? model, evalData!, 256, device);
                        evalAcc = lastEval.Accuracy;
                    }
                    history.Add(new EpochMetrics(epoch + 1, epochLoss / epochSeen, (double)epochCorrect / epochSeen, evalAcc,
                                                 epochClock.Elapsed.TotalSeconds));
                    epochLoss = 0; epochCorrect = 0; epochSeen = 0; epochClock.Restart();
                }
                if (epochEnd || step % options.CheckpointEverySteps == 0)
                    SaveState(last, model, emaModel, sgd, step, secondsBefore + clock.Elapsed.TotalSeconds, history, description);
            }
        }

        double seconds = secondsBefore + clock.Elapsed.TotalSeconds;
        var final = RunRecord(step, seconds, history, description);
        final["finalEval"] = lastEval is null ? null : JsonSerializer.SerializeToNode(new { lastEval.Correct, lastEval.Total, lastEval.Accuracy });
        Checkpoint.Save(Path.Combine(outputDir, "final"), model, emaModel, null, final);
        return new TrainResult(outputDir, history, lastEval, seconds);
    }

    private JsonObject RunRecord(long step, double seconds, List<EpochMetrics> history, JsonObject? description)
    {
        var run = description?.DeepClone().AsObject() ?? new JsonObject();
        run["objective"] = objective.Name;
        run["options"] = JsonSerializer.SerializeToNode(options);
        run["step"] = step;
        run["seconds"] = seconds;
        run["history"] = JsonSerializer.SerializeToNode(history);
        return run;
    }

    private void SaveState(string stem, Classifier model, Classifier? ema, Sgd sgd, long step, double seconds,
                           List<EpochMetrics> history, JsonObject? description) =>
        Checkpoint.Save(stem, model, ema, sgd, RunRecord(step, seconds, history, description));

    private (long Step, double Seconds) Restore(string stem, Classifier model, Classifier? ema, Sgd sgd, List<EpochMetrics> history)
    {
        var run = Checkpoint.ReadRun(stem);
        var spec = Checkpoint.ReadArch(run, stem);
        if (!spec.Equals(model.Spec))
            throw new CheckpointException(Checkpoint.JsonPath(stem), $"was written for {spec}, this run trains {model.Spec}");
        var saved = run["options"].Deserialize<TrainOptions>();
        if (saved is not null && saved with { CheckpointEverySteps = 0, EvalEveryEpochs = 0, Device = "" }
                              != options with { CheckpointEverySteps = 0, EvalEveryEpochs = 0, Device = "" })
            throw new CheckpointException(Checkpoint.JsonPath(stem),
                "was written with different training options; resume with the same options or start a new output folder");
        var tensors = Checkpoint.ReadTensors(stem, run);
        try
        {
            Checkpoint.LoadInto(model, tensors, "", Checkpoint.WeightsPath(stem));
            if (ema is not null) Checkpoint.LoadInto(ema, tensors, Checkpoint.EmaPrefix, Checkpoint.WeightsPath(stem));
            using var noGrad = no_grad();
            foreach (var (name, buffer) in sgd.Buffers())
                if (tensors.TryGetValue(Checkpoint.MomentumPrefix + name, out var m)) buffer.copy_(m);
                else throw new CheckpointException(Checkpoint.WeightsPath(stem), $"optimizer state for '{name}' is missing");
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
        history.AddRange(run["history"].Deserialize<List<EpochMetrics>>() ?? []);
        return ((long?)run["step"] ?? 0, (double?)run["seconds"] ?? 0);
    }
}
