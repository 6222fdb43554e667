using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

public enum AutoAttackVersion
{
    Standard,
    Plus,
    Rand,

    /// <summary>For screening: APGD-CE, then APGD-T on MALT's targets.</summary>
    Fast,

    /// <summary>For final numbers: standard, then APGD-PM and APGD-T on MALT's targets.</summary>
    Strong,
}

/// <summary>Robust accuracy after one component of the ensemble, the time it took, and the points (indices into the
/// evaluated data) it broke that the components before it had not.</summary>
public sealed record AutoAttackStage(
    string Attack,
    string Description,
    int RobustAfter,
    int Attacked,
    double Seconds,
    int[]? Broken = null
);

public sealed record AutoAttackResult(
    int Total,
    int CleanCorrect,
    IReadOnlyList<AutoAttackStage> Stages,
    bool[] Robust,
    long[] AdversarialPredictions,
    float[] Adversarial,
    IReadOnlyList<string> Warnings
)
{
    public int RobustCorrect => Stages.Count == 0 ? CleanCorrect : Stages[^1].RobustAfter;
    public double CleanAccuracy => (double)CleanCorrect / Total;
    public double RobustAccuracy => (double)RobustCorrect / Total;
}

/// <summary>
/// AutoAttack (Croce &amp; Hein, ICML 2020): a fixed ensemble of parameter-free attacks run in sequence, each
/// only on the points still robust, so the reported robust accuracy is the fraction of points no component could break.
/// standard: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5,000 queries), 1 restart each. plus: APGD-CE and
/// APGD-DLR with 5 restarts, FAB with 5 restarts, Square, APGD-T, FAB-T. rand (randomised defences): APGD-CE and
/// APGD-DLR with 20 EOT iterations. fast: APGD-CE, then APGD-T towards MALT's nearest targets (Melamed et al. 2024).
/// strong: standard, then APGD with the probability-margin loss (Xie et al. 2024) and MALT-targeted APGD-T. Every
/// returned example is checked against the threat model and re-evaluated: a
/// point is counted as broken only if the model misclassifies the returned example.
/// </summary>
public sealed class AutoAttack(
    ThreatModel threat,
    AutoAttackVersion version = AutoAttackVersion.Standard,
    long seed = 0,
    int batchSize = 250,
    int maltTargets = 5,
    int maltIterations = 100
)
{
    public ThreatModel Threat => threat;
    public AutoAttackVersion Version => version;

    /// <summary>The components in the order they run, for a problem with <paramref name="numClasses"/>
    /// classes.</summary>
    public IReadOnlyList<(string Key, IAttack Attack)> Components(int numClasses)
    {
        int targets = Math.Min(9, numClasses - 1);
        return version switch
        {
            AutoAttackVersion.Standard =>
            [
                ("apgd-ce", new Apgd(threat, 100, 1, ApgdLoss.CrossEntropy)),
                ("apgd-t", new Apgd(threat, 100, 1, ApgdLoss.TargetedDlr, targets)),
                ("fab-t", new Fab(threat, 100, 1, Targeted: true, TargetClasses: targets)),
                ("square", new Square(threat, 5000)),
            ],
            AutoAttackVersion.Fast =>
            [
                ("apgd-ce", new Apgd(threat, 100, 1, ApgdLoss.CrossEntropy)),
                ("apgd-malt", Malt(numClasses)),
            ],
            // standard's components first, in standard's positions, so they get standard's seeds and result
            AutoAttackVersion.Strong =>
            [
                .. new AutoAttack(threat, AutoAttackVersion.Standard, seed, batchSize).Components(numClasses),
                ("apgd-pm", new Apgd(threat, 100, 1, ApgdLoss.ProbabilityMargin)),
                ("apgd-malt", Malt(numClasses)),
            ],
            AutoAttackVersion.Plus =>
            [
                ("apgd-ce", new Apgd(threat, 100, 5, ApgdLoss.CrossEntropy)),
                ("apgd-dlr", new Apgd(threat, 100, 5, ApgdLoss.Dlr)),
                ("fab", new Fab(threat, 100, 5, Targeted: false)),
                ("square", new Square(threat, 5000)),
                ("apgd-t", new Apgd(threat, 100, 1, ApgdLoss.TargetedDlr, targets)),
                ("fab-t", new Fab(threat, 100, 1, Targeted: true, TargetClasses: targets)),
            ],
            _ =>
            [
                ("apgd-ce", new Apgd(threat, 100, 1, ApgdLoss.CrossEntropy, EotIterations: 20)),
                ("apgd-dlr", new Apgd(threat, 100, 1, ApgdLoss.Dlr, EotIterations: 20)),
            ],
        };
    }

    /// <summary>The version's components as one attack on a batch (no state, no report): for validation during
    /// training.</summary>
    public IAttack AsAttack(int numClasses) =>
        new AttackSequence(
            $"AutoAttack {version.ToString().ToLowerInvariant()}",
            threat,
            Components(numClasses).Select(c => c.Attack).ToList(),
            seed
        );

    private Apgd Malt(int numClasses) =>
        new(
            threat,
            maltIterations,
            1,
            ApgdLoss.TargetedDlr,
            Math.Min(maltTargets, numClasses - 1),
            Targeting: TargetOrder.Malt
        );

    /// <param name="only">run only these component keys (null: all of the version)</param>
    /// <param name="progress">(component key, points done, points to attack)</param>
    /// <param name="statePath"> where to keep the run's state after every batch (see <see cref="AutoAttackState"/>);
    /// when it holds the state of the same run, the run continues from it and ends with the same result as an
    /// uninterrupted one. Removed when the run finishes.
    /// </param>
    public AutoAttackResult Run(
        Classifier model,
        ImageDataset data,
        Device device,
        IReadOnlyCollection<string>? only = null,
        IProgress<(string Attack, int Done, int Total)>? progress = null,
        CancellationToken cancel = default,
        string? statePath = null,
        IRanks? ranks = null
    )
    {
        // In a job of several ranks, each rank attacks every Size-th batch of a component (with the batch's own seed,
        // as one process would), and the ranks merge what they broke before the next component: the result equals a
        // single process's. The state is then kept at component ends only, by rank 0.
        var job = ranks ?? SingleProcess.Instance;
        bool sharded = job.Size > 1;
        using var scope = NewDisposeScope();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var (x, y) = BatchSampler.All(data, device);
            var components = Components(data.NumClasses).Where(c => only is null || only.Contains(c.Key)).ToList();
            string? fingerprint = statePath is null
                ? null
                : AutoAttackState.FingerprintOf(
                    model,
                    this,
                    data,
                    // the descriptions carry every setting of a component (targets, iterations, restarts)
                    components.Select(c => $"{c.Key}={c.Attack.Name}"),
                    batchSize,
                    seed
                );
            AutoAttackState? saved = null;
            float[] savedAdv = [];
            if (statePath is not null && File.Exists(statePath))
            {
                (saved, savedAdv) = AutoAttackState.Load(statePath);
                if (saved.Fingerprint != fingerprint)
                    throw new DataFormatException(
                        statePath,
                        "holds the state of another AutoAttack run (other points or attack "
                            + "settings); remove it or write elsewhere"
                    );
            }

            Tensor predictions,
                robust,
                adv,
                robustAtStart;
            int clean;
            List<string> warnings;
            var stages = new List<AutoAttackStage>();
            int firstComponent = 0,
                firstBatch = 0;
            double secondsBefore = 0;
            if (saved is null)
            {
                int sample = Math.Min(batchSize, data.Count);
                warnings = Checks.BeforeEvaluation(
                    model,
                    x.narrow(0, 0, sample),
                    y.narrow(0, 0, sample),
                    expectRandom: version == AutoAttackVersion.Rand
                );
                predictions = Predict(model, x);
                robust = predictions.eq(y);
                adv = x.clone();
                clean = (int)robust.sum().item<long>();
                robustAtStart = robust.clone();
            }
            else
            {
                warnings = [.. saved.Warnings];
                predictions = tensor(saved.Predictions, device: device);
                robust = tensor(Bits.Parse(saved.Robust), device: device);
                robustAtStart = tensor(Bits.Parse(saved.RobustAtComponentStart), device: device);
                adv = tensor(savedAdv, device: device).view(x.shape).to(x.dtype);
                clean = saved.CleanCorrect;
                stages.AddRange(saved.Stages);
                (firstComponent, firstBatch, secondsBefore) = (saved.Component, saved.Batch, saved.ComponentSeconds);
            }

            for (int a = firstComponent; a < components.Count; a++)
            {
                var (key, attack) = components[a];
                var clock = System.Diagnostics.Stopwatch.StartNew();
                bool resumed = a == firstComponent && saved is not null;
                if (!resumed)
                    robustAtStart = robust.clone();
                double before = resumed ? secondsBefore : 0;
                var todo = robustAtStart.nonzero().view(-1);
                int toAttack = (int)todo.shape[0];
                int startBatch = resumed ? firstBatch : 0;
                var robustBeforeMine = sharded ? robust.clone() : null;
                if (startBatch > 0)
                    progress?.Report((key, Math.Min(startBatch * batchSize, toAttack), toAttack));
                for (
                    int batchIndex = startBatch, start = startBatch * batchSize;
                    start < toAttack;
                    start += batchSize, batchIndex++
                )
                {
                    cancel.ThrowIfCancellationRequested();
                    if (sharded && batchIndex % job.Size != job.Rank)
                        continue; // another rank's batch
                    using (var batchScope = NewDisposeScope())
                    {
                        var idx = todo.narrow(0, start, Math.Min(batchSize, toAttack - start));
                        var xb = x.index_select(0, idx);
                        var yb = y.index_select(0, idx);
                        int batchStart = start,
                            batchCount = (int)idx.shape[0];
                        var within = progress is null
                            ? null
                            : new Reporter<double>(f =>
                                progress.Report((key, batchStart + (int)(f * batchCount), toAttack))
                            );
                        var advB = attack
                            .WithSeed(Seeds.Derive(seed, a, batchIndex))
                            .WithProgress(within)
                            .Perturb(model, xb, yb);
                        Checks.InsideThreatModel(threat, advB, xb);
                        var predB = Predict(model, advB);
                        var broken = predB.ne(yb);
                        var hit = RobustPoints.MarkBroken(robust, adv, idx, broken, advB);
                        predictions.index_copy_(0, hit, predB.index_select(0, broken.nonzero().view(-1)));
                    }
                    progress?.Report((key, Math.Min(start + batchSize, toAttack), toAttack));
                    if (statePath is not null && !sharded)
                        SaveState(
                            statePath,
                            fingerprint!,
                            a,
                            batchIndex + 1,
                            robustAtStart,
                            robust,
                            predictions,
                            adv,
                            clean,
                            stages,
                            before + clock.Elapsed.TotalSeconds,
                            warnings
                        );
                }
                if (sharded)
                    MergeRanks(job, robustBeforeMine!, robust, predictions, adv);
                stages.Add(
                    new AutoAttackStage(
                        key,
                        attack.Name,
                        (int)robust.sum().item<long>(),
                        toAttack,
                        before + clock.Elapsed.TotalSeconds,
                        robustAtStart
                            .logical_and(robust.logical_not())
                            .nonzero()
                            .view(-1)
                            .data<long>()
                            .Select(i => (int)i)
                            .ToArray()
                    )
                );
                if (toAttack == 0)
                    progress?.Report((key, 0, 0));
                if (statePath is not null && job.IsRoot)
                    SaveState(
                        statePath,
                        fingerprint!,
                        a + 1,
                        0,
                        robust,
                        robust,
                        predictions,
                        adv,
                        clean,
                        stages,
                        0,
                        warnings
                    );
            }
            // Final check, as in the reference code: the whole set of returned points is inside the threat model.
            Checks.InsideThreatModel(threat, adv, x);
            // Square is gradient-free: if it still breaks more than 0.2% of the points after the white-box attacks,
            // their gradients were probably masked.
            int square = stages.FindIndex(st => st.Attack == "square");
            if (
                version is AutoAttackVersion.Standard or AutoAttackVersion.Strong
                && square > 0
                && Checks.BlackBoxAfterWhiteBox(
                    "Square",
                    stages[square - 1].RobustAfter,
                    stages[square].RobustAfter,
                    data.Count
                )
                    is { } masking
            )
                warnings.Add(masking);
            var advHost = adv.permute(0, 2, 3, 1).contiguous().cpu().data<float>().ToArray();
            var result = new AutoAttackResult(
                data.Count,
                clean,
                stages,
                robust.cpu().data<bool>().ToArray(),
                predictions.cpu().data<long>().ToArray(),
                advHost,
                warnings
            );
            if (statePath is not null && job.IsRoot)
                AutoAttackState.Delete(statePath);
            return result;
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>
    /// After a component of a sharded run: every rank gets the points any rank broke, with that rank's adversarial
    /// example and prediction. Each point was attacked by exactly one rank, so summing each rank's values masked to
    /// the points it broke (zeros elsewhere) reproduces them exactly.
    /// </summary>
    private static void MergeRanks(IRanks job, Tensor robustBefore, Tensor robust, Tensor predictions, Tensor adv)
    {
        using var scope = NewDisposeScope();
        var mine = robustBefore.logical_and(robust.logical_not());
        long n = robust.shape[0];
        var perPoint = mine.view(-1, 1).to(ScalarType.Float32);
        var buffer = cat([
                perPoint.view(-1),
                predictions.to(ScalarType.Float32) * perPoint.view(-1),
                (adv.reshape(n, -1).to(ScalarType.Float32) * perPoint).view(-1),
            ])
            .cpu()
            .contiguous();
        job.SumInPlace(buffer);
        buffer = buffer.to(robust.device);
        var any = buffer.narrow(0, 0, n).gt(0);
        robust.logical_and_(any.logical_not());
        predictions.copy_(where(any, buffer.narrow(0, n, n).round().to(predictions.dtype), predictions));
        var merged = buffer.narrow(0, 2 * n, adv.numel()).view(adv.shape).to(adv.dtype);
        adv.copy_(where(any.view(-1, 1, 1, 1), merged, adv));
    }

    private static string BitsOf(Tensor mask) => Bits.Of(mask.cpu().data<bool>().ToArray());

    private static void SaveState(
        string path,
        string fingerprint,
        int component,
        int batch,
        Tensor robustAtStart,
        Tensor robust,
        Tensor predictions,
        Tensor adv,
        int clean,
        List<AutoAttackStage> stages,
        double seconds,
        List<string> warnings
    )
    {
        var state = new AutoAttackState(
            fingerprint,
            component,
            batch,
            BitsOf(robustAtStart),
            BitsOf(robust),
            predictions.cpu().data<long>().ToArray(),
            "",
            "",
            clean,
            stages.ToList(),
            seconds,
            warnings.ToList()
        );
        state.Save(path, adv.contiguous().cpu().data<float>().ToArray());
    }

    private Tensor Predict(Classifier model, Tensor x)
    {
        using var noGrad = no_grad();
        var parts = new List<Tensor>();
        for (long s = 0; s < x.shape[0]; s += batchSize)
            parts.Add(model.call(x.narrow(0, s, Math.Min(batchSize, x.shape[0] - s))).argmax(1));
        return cat(parts);
    }
}
