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
    public string Device { get; init; } = "cpu";
}

public sealed record TrainProgress(int Epoch, int Epochs, long Step, long TotalSteps, double Loss, double Accuracy,
                                   double ImagesPerSecond, double LearningRate);

/// <summary>Accuracy on the validation set after an epoch: clean, and robust when an attack is configured.</summary>
public sealed record Validation(double Clean, double? Robust)
{
    /// <summary>What "best" maximises: robust accuracy when measured, else clean accuracy.</summary>
    public double Score => Robust ?? Clean;
}

public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double? ValClean, double? ValRobust, double Seconds);

/// <summary>Proxy data mixed into every batch: the stream and gamma, the weight of the synthetic part of the loss.</summary>
public sealed record SyntheticMix(SyntheticStream Stream, double Gamma);

public sealed record TrainResult(string OutputDir, IReadOnlyList<EpochMetrics> History, int? BestEpoch, double Seconds);

/// <summary>
/// Runs a training loop with any <see cref="ITrainingObjective"/>: seeded batches (real, plus synthetic ones when mixing),
/// SGD with a per-iteration cosine schedule, optional EMA, a validation after every epoch with the best epoch kept
/// (OUT/best.*), resumable checkpoints every few steps (OUT/last.*) and the final weights (OUT/final.*). With resume it
/// continues from OUT/last.* and ends with the same weights as an uninterrupted run: the batch order and augmentation
/// depend only on (seed, epoch, batch), and torch's generator is re-seeded from (seed, step) before every step.
/// </summary>
public sealed class Trainer(TrainOptions options, ITrainingObjective objective)
{
    public TrainOptions Options => options;

    public TrainResult Run(Classifier model, ImageDataset train, string outputDir, bool resume,
                           IProgress<TrainProgress>? progress = null, CancellationToken cancel = default,
                           JsonObject? description = null, Func<Classifier, Validation>? validate = null, SyntheticMix? synthetic = null)
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
        var synthBatch = synthetic?.Stream.NewBatch();

        var state = new RunState();
        var last = Path.Combine(outputDir, "last");
        if (resume && File.Exists(Checkpoint.JsonPath(last)))
            state = Restore(last, model, emaModel, sgd);
        else
            Directory.CreateDirectory(outputDir);

        var clock = Stopwatch.StartNew();
        var epochClock = Stopwatch.StartNew();
        var rateClock = Stopwatch.StartNew(); long rateImages = 0;
        model.train();

        while (state.Step < totalSteps)
        {
            int epoch = (int)(state.Step / stepsPerEpoch);
            int batchInEpoch = (int)(state.Step % stepsPerEpoch);
            foreach (var batch in sampler.Epoch(epoch, batchInEpoch))
            {
                cancel.ThrowIfCancellationRequested();
                long step = state.Step;
                double lr = schedule.At(step);
                using (var scope = NewDisposeScope())
                {
                    torch.manual_seed(Seeds.Derive(options.Seed, step, 0x57E9));
                    var (x, y) = batch.ToTensors(device);
                    var w = full(batch.Count, 1.0 / batch.Count, device: device);
                    if (synthetic is not null)
                    {
                        // PORT: real and synthetic images in one batch; the synthetic part weighs gamma in the loss.
                        synthetic.Stream.Fill(step, synthBatch!);
                        var (xs, ys) = synthBatch!.ToTensors(device);
                        x = cat([x, xs]);
                        y = cat([y, ys]);
                        w = cat([w * (1 - synthetic.Gamma), full(synthBatch.Count, synthetic.Gamma / synthBatch.Count, device: device)]);
                    }
                    var (loss, logits) = objective.Loss(model, x, y, w);
                    model.zero_grad();
                    loss.backward();
                    sgd.Step(lr);
                    ema?.Update();
                    float lossValue = loss.item<float>();
                    if (!float.IsFinite(lossValue))
                        throw new InvalidOperationException($"training diverged at step {step} (loss {lossValue}); lower the learning rate");
                    state.EpochLoss += lossValue * y.shape[0];
                    state.EpochCorrect += logits.argmax(1).eq(y).sum().item<long>();
                    state.EpochSeen += y.shape[0];
                    rateImages += y.shape[0];
                }
                state.Step++;
                progress?.Report(new TrainProgress(epoch + 1, options.Epochs, state.Step, totalSteps, state.EpochLoss / state.EpochSeen,
                    (double)state.EpochCorrect / state.EpochSeen, rateImages / Math.Max(1e-9, rateClock.Elapsed.TotalSeconds), lr));
                bool epochEnd = state.Step % stepsPerEpoch == 0;
                if (epochEnd)
                {
                    var evaluated = emaModel ?? model;
                    var val = validate?.Invoke(evaluated);
                    state.History.Add(new EpochMetrics(epoch + 1, state.EpochLoss / state.EpochSeen, (double)state.EpochCorrect / state.EpochSeen,
                                                       val?.Clean, val?.Robust, epochClock.Elapsed.TotalSeconds));
                    if (val is not null && (state.BestScore is null || val.Score > state.BestScore))
                    {
                        state.BestScore = val.Score;
                        state.BestEpoch = epoch + 1;
                        var best = RunRecord(state, secondsSoFar: 0, description);
                        best["epoch"] = epoch + 1;
                        best["validation"] = JsonSerializer.SerializeToNode(val);
                        Checkpoint.Save(Path.Combine(outputDir, "best"), model, emaModel, null, best);
                    }
                    state.EpochLoss = 0; state.EpochCorrect = 0; state.EpochSeen = 0; epochClock.Restart();
                }
                if (epochEnd || state.Step % options.CheckpointEverySteps == 0)
                    Checkpoint.Save(last, model, emaModel, sgd, RunRecord(state, state.SecondsBefore + clock.Elapsed.TotalSeconds, description));
            }
        }

        double seconds = state.SecondsBefore + clock.Elapsed.TotalSeconds;
        Checkpoint.Save(Path.Combine(outputDir, "final"), model, emaModel, null, RunRecord(state, seconds, description));
        return new TrainResult(outputDir, state.History, state.BestEpoch, seconds);
    }

    /// <summary>Everything about progress that a resumed run must get back.</summary>
    private sealed class RunState
    {
        public long Step;
        public double SecondsBefore;
        public double EpochLoss;
        public long EpochCorrect, EpochSeen;
        public double? BestScore;
        public int? BestEpoch;
        public List<EpochMetrics> History = [];
    }

    private JsonObject RunRecord(RunState state, double secondsSoFar, JsonObject? description)
    {
        var run = description?.DeepClone().AsObject() ?? new JsonObject();
        run["objective"] = objective.Name;
        run["options"] = JsonSerializer.SerializeToNode(options);
        run["step"] = state.Step;
        run["seconds"] = secondsSoFar;
        run["epochPartial"] = new JsonObject { ["loss"] = state.EpochLoss, ["correct"] = state.EpochCorrect, ["seen"] = state.EpochSeen };
        run["bestScore"] = state.BestScore;
        run["bestEpoch"] = state.BestEpoch;
        run["history"] = JsonSerializer.SerializeToNode(state.History);
        return run;
    }

    private RunState Restore(string stem, Classifier model, Classifier? ema, Sgd sgd)
    {
        var run = Checkpoint.ReadRun(stem);
        var spec = Checkpoint.ReadArch(run, stem);
        if (!spec.Equals(model.Spec))
            throw new CheckpointException(Checkpoint.JsonPath(stem), $"was written for {spec}, this run trains {model.Spec}");
        var saved = run["options"].Deserialize<TrainOptions>();
        if (saved is not null && saved with { CheckpointEverySteps = 0, Device = "" }
                              != options with { CheckpointEverySteps = 0, Device = "" })
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
        var partial = run["epochPartial"];
        return new RunState
        {
            Step = (long?)run["step"] ?? 0,
            SecondsBefore = (double?)run["seconds"] ?? 0,
            EpochLoss = (double?)partial?["loss"] ?? 0,
            EpochCorrect = (long?)partial?["correct"] ?? 0,
            EpochSeen = (long?)partial?["seen"] ?? 0,
            BestScore = (double?)run["bestScore"],
            BestEpoch = (int?)run["bestEpoch"],
            History = run["history"].Deserialize<List<EpochMetrics>>() ?? [],
        };
    }
}
