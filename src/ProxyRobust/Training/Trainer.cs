using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>Hyper-parameters of one training run. Defaults follow the paper's code (SGD 0.1, momentum 0.9, wd 5e-4,
/// cosine).</summary>
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

    /// <summary>Over MPI: batch norms use the statistics of the global batch, not each rank's shard
    /// (<see cref="BatchNormSync"/>); no effect in one process.</summary>
    public bool SyncBatchNorm { get; init; }

    /// <summary>EMA decay of the weights, or null for no EMA.</summary>
    public double? EmaDecay { get; init; }
    public int Seed { get; init; }
    public AugmentOptions Augment { get; init; } = AugmentOptions.None;

    /// <summary>Save a resumable checkpoint every this many optimizer steps (and at every epoch end).</summary>
    public int CheckpointEverySteps { get; init; } = 200;
    public string Device { get; init; } = "cpu";
}

public sealed record TrainProgress(
    int Epoch,
    int Epochs,
    long Step,
    long TotalSteps,
    double Loss,
    double Accuracy,
    double ImagesPerSecond,
    double LearningRate
);

/// <summary>Accuracy on the validation set after an epoch: clean, and robust when an attack is configured.</summary>
public sealed record Validation(double Clean, double? Robust)
{
    /// <summary>What "best" maximises: robust accuracy when measured, else clean accuracy.</summary>
    public double Score => Robust ?? Clean;
}

public sealed record EpochMetrics(
    int Epoch,
    double TrainLoss,
    double TrainAccuracy,
    double? ValClean,
    double? ValRobust,
    double Seconds
);

/// <summary>Proxy data mixed into every batch: the stream and gamma, the weight of the synthetic part of the
/// loss.</summary>
public sealed record SyntheticMix(SyntheticStream Stream, double Gamma);

/// <summary>How a data-parallel run (of this session, since the last resume) spent its time: the seconds its rank 0
/// spent in the gradient all-reduce (including waiting for slower ranks) over how many steps, and the bytes each
/// step sends per rank.</summary>
public sealed record ParallelTraining(
    int Ranks,
    long Steps,
    double Seconds,
    double CommunicationSeconds,
    long BytesPerStep
)
{
    public double CommunicationShare => Seconds > 0 ? CommunicationSeconds / Seconds : 0;
}

public sealed record TrainResult(
    string OutputDir,
    IReadOnlyList<EpochMetrics> History,
    int? BestEpoch,
    double Seconds,
    ParallelTraining? Parallel = null
);

/// <summary>
/// Runs a training loop with any <see cref="ITrainingObjective"/>: seeded batches (real, plus synthetic ones when
/// mixing),
/// SGD with a per-iteration cosine schedule, optional EMA, a validation after every epoch with the best epoch kept
/// (OUT/best.*), resumable checkpoints every few steps (OUT/last.*) and the final weights (OUT/final.*). With resume it
/// continues from OUT/last.* and ends with the same weights as an uninterrupted run: the batch order and augmentation
/// depend only on (seed, epoch, batch), and torch's generator is re-seeded from (seed, step) before every step.
/// </summary>
public sealed class Trainer(TrainOptions options, ITrainingObjective objective)
{
    public TrainOptions Options => options;

    /// <summary>Statistics summed with the gradients: loss, correct, seen, stop requested.</summary>
    private const int Statistics = 4;

    /// <summary>
    /// Trains <paramref name="model"/>. When <paramref name="cancel"/> fires, the run saves OUT/last.* at the step it
    /// reached and throws <see cref="OperationCanceledException"/>; resuming from there ends as an uninterrupted run
    /// would.
    /// </summary>
    public TrainResult Run(
        Classifier model,
        ImageDataset train,
        string outputDir,
        bool resume,
        IProgress<TrainProgress>? progress = null,
        CancellationToken cancel = default,
        JsonObject? description = null,
        Func<Classifier, Validation>? validate = null,
        SyntheticMix? synthetic = null,
        IRanks? ranks = null
    )
    {
        // Data parallelism (ranks.Size > 1): every rank draws the same global batch, takes every Size-th row of it,
        // and the summed gradients give every rank the step one process would take on the whole batch. Only rank 0
        // validates and writes files.
        var job = ranks ?? SingleProcess.Instance;
        var device = torch.device(options.Device);
        model.to(device);
        using var emaModel = options.EmaDecay is null ? null : AverageOf(model, device);
        var ema = emaModel is null ? null : new WeightAverage(model, emaModel, options.EmaDecay!.Value);
        using var sgd = new Sgd(model, options.Momentum, options.WeightDecay, options.Nesterov);

        var sampler = new BatchSampler(
            train,
            options.BatchSize,
            shuffle: true,
            options.Augment,
            options.Seed,
            dropLast: false
        );
        long stepsPerEpoch = sampler.BatchesPerEpoch,
            totalSteps = stepsPerEpoch * options.Epochs;
        var schedule = new CosineSchedule(
            options.LearningRate,
            totalSteps,
            (long)Math.Round(options.WarmupEpochs * stepsPerEpoch)
        );
        var synthBatch = synthetic?.Stream.NewBatch();

        var last = Path.Combine(outputDir, "last");
        var state =
            resume && File.Exists(Checkpoint.JsonPath(last))
                ? TrainingState.Restore(last, model, emaModel, sgd, options)
                : new TrainingState();
        using var sync = job.Size > 1 ? new GradientSync(model, job, Statistics) : null;
        sync?.BroadcastFromRoot(model); // the same start on every rank, whatever each one initialised or restored
        if (job.IsRoot)
            Directory.CreateDirectory(outputDir);
        var clock = Stopwatch.StartNew();
        var epochClock = Stopwatch.StartNew();
        var rateClock = Stopwatch.StartNew();
        long rateImages = 0;
        void SaveLast()
        {
            if (!job.IsRoot)
                return;
            Checkpoint.Save(
                last,
                model,
                emaModel,
                sgd,
                state.ToRecord(objective.Name, options, state.SecondsBefore + clock.Elapsed.TotalSeconds, description)
            );
        }
        model.train();
        var stats = new float[Statistics];

        while (state.Step < totalSteps)
        {
            int epoch = (int)(state.Step / stepsPerEpoch);
            int batchInEpoch = (int)(state.Step % stepsPerEpoch);
            foreach (var batch in sampler.Epoch(epoch, batchInEpoch))
            {
                if (sync is null && cancel.IsCancellationRequested)
                {
                    SaveLast(); // the step reached: --resume continues exactly here
                    cancel.ThrowIfCancellationRequested();
                }
                long step = state.Step;
                double lr = schedule.At(step);
                using (var scope = NewDisposeScope())
                {
                    torch.manual_seed(
                        job.Rank == 0
                            ? Seeds.Derive(options.Seed, step, 0x57E9)
                            : Seeds.Derive(options.Seed, step, 0x57E9, job.Rank)
                    );
                    var (xr, yr) = batch.ToTensors(device);
                    Tensor? xs = null,
                        ys = null;
                    if (synthetic is not null)
                    {
                        synthetic.Stream.Fill(step, synthBatch!);
                        (xs, ys) = synthBatch!.ToTensors(device);
                    }
                    var (x, y, w) = PortMixing.Mix(xr, yr, xs, ys, synthetic?.Gamma ?? 0);
                    if (sync is not null)
                    {
                        var rows = tensor(Shards.Strided(x.shape[0], job.Rank, job.Size), device: device);
                        (x, y, w) = (x.index_select(0, rows), y.index_select(0, rows), w.index_select(0, rows));
                    }
                    model.zero_grad();
                    float lossValue = 0;
                    long correct = 0;
                    // A rank can get no row of a short last batch; with synchronised batch norm it still runs the
                    // step on its empty shard, because the other ranks' batch norms wait for its statistics.
                    bool syncNorms = sync is not null && options.SyncBatchNorm;
                    if (y.shape[0] > 0 || syncNorms)
                    {
                        using var norms = syncNorms ? BatchNormSync.Across(job) : null;
                        var (loss, logits) = objective.Loss(model, x, y, w);
                        loss.backward();
                        lossValue = y.shape[0] > 0 ? loss.item<float>() : 0;
                        correct = logits.argmax(1).eq(y).sum().item<long>();
                    }
                    long seen = y.shape[0];
                    if (sync is not null)
                    {
                        // one collective per step carries the gradients, the statistics and whether any rank was
                        // asked to stop, so that all stop at the same step
                        (stats[0], stats[1], stats[2]) = (lossValue, correct, seen);
                        stats[3] = cancel.IsCancellationRequested ? 1 : 0;
                        sync.Reduce(stats);
                        (lossValue, correct, seen) = (stats[0], (long)stats[1], (long)stats[2]);
                        if (stats[3] > 0)
                        {
                            SaveLast(); // before this step: --resume continues exactly here
                            throw new OperationCanceledException(cancel);
                        }
                    }
                    if (!float.IsFinite(lossValue))
                        throw new InvalidOperationException(
                            $"training diverged at step {step} (loss {lossValue}); lower the learning rate"
                        );
                    sgd.Step(lr);
                    ema?.Update();
                    state.AddBatch(lossValue, correct, seen);
                    rateImages += seen;
                }
                state.Step++;
                progress?.Report(
                    new TrainProgress(
                        epoch + 1,
                        options.Epochs,
                        state.Step,
                        totalSteps,
                        state.EpochLoss / state.EpochSeen,
                        (double)state.EpochCorrect / state.EpochSeen,
                        rateImages / Math.Max(1e-9, rateClock.Elapsed.TotalSeconds),
                        lr
                    )
                );
                bool epochEnd = state.Step % stepsPerEpoch == 0;
                if (epochEnd)
                {
                    var val = job.IsRoot ? validate?.Invoke(emaModel ?? model) : null;
                    state.EndEpoch(epoch + 1, val, epochClock.Elapsed.TotalSeconds);
                    if (job.IsRoot && state.IsNewBest(val, epoch + 1))
                    {
                        var best = state.ToRecord(objective.Name, options, secondsSoFar: 0, description);
                        best["epoch"] = epoch + 1;
                        best["validation"] = JsonFiles.ToNode(val);
                        Checkpoint.Save(Path.Combine(outputDir, "best"), model, emaModel, null, best);
                    }
                    epochClock.Restart();
                }
                if (epochEnd || state.Step % options.CheckpointEverySteps == 0)
                    SaveLast();
            }
        }

        if (sync is not null)
            CheckRanksAgree(model, job);
        double seconds = state.SecondsBefore + clock.Elapsed.TotalSeconds;
        if (job.IsRoot)
            Checkpoint.Save(
                Path.Combine(outputDir, "final"),
                model,
                emaModel,
                null,
                state.ToRecord(objective.Name, options, seconds, description)
            );
        var parallel = sync is null
            ? null
            : new ParallelTraining(
                job.Size,
                sync.Reductions,
                clock.Elapsed.TotalSeconds,
                sync.Seconds,
                sync.BytesPerReduction
            );
        return new TrainResult(outputDir, state.History, state.BestEpoch, seconds, parallel);
    }

    /// <summary>Every rank must end with rank 0's weights (they took the same steps from the same start); a
    /// difference means a rank computed something else, and the saved result would not be the job's.</summary>
    private static void CheckRanksAgree(Classifier model, IRanks job)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(
            System.Security.Cryptography.HashAlgorithmName.SHA256
        );
        foreach (var (_, p) in model.named_parameters())
            hash.AppendData(p.detach().cpu().contiguous().bytes);
        var all = job.GatherToRoot(hash.GetHashAndReset());
        if (all is null)
            return;
        var differing = Enumerable.Range(1, all.Length - 1).Where(r => !all[r].AsSpan().SequenceEqual(all[0])).ToList();
        if (differing.Count > 0)
            throw new InvalidOperationException(
                $"rank(s) {string.Join(", ", differing)} ended with other weights than rank 0: the ranks diverged"
            );
    }

    /// <summary>A second copy of the model that will hold the EMA of its weights (evaluated, never trained).</summary>
    private static Classifier AverageOf(Classifier model, Device device)
    {
        var average = model.Spec.Create();
        average.to(device);
        average.load_state_dict(model.state_dict());
        average.eval();
        return average;
    }
}
