using System.Globalization;
using System.Text;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Proxy;
using ProxyRobust.Reporting;
using ProxyRobust.Training;
using TorchSharp;

namespace ProxyRobust.Experiments;

/// <summary>
/// A quality report of a synthetic store against real data, in the feature space of <see cref="Classifier"/> (a
/// checkpoint trained on the real data): <see cref="Count"/> class-balanced images of each side, real ones from the
/// test split of <see cref="Real"/>.
/// </summary>
public sealed record SyntheticReportRequest(
    string Synthetic,
    string Classifier,
    string Output,
    string? Real = null,
    string? Labels = null,
    int Count = 10_000,
    int Seed = 0,
    int BatchSize = 500,
    string Device = "cpu",
    int NearestNeighbours = 3,
    int WassersteinPerClass = 200,
    int WassersteinRepeats = 10,
    string? RobustModel = null,
    int RobustPoints = 500,
    double RobustEpsilon = 1.5
);

/// <summary>One class of a store: how many images it has, how many of the evaluated ones the real-data classifier
/// recognises, and the class-conditional Fréchet distance.</summary>
public sealed record ClassQuality(
    string Name,
    int Images,
    int Evaluated,
    double Recognised,
    double[] RecognisedWilson95,
    double FrechetDistance
);

/// <summary>The same numbers for a set of images: the store, or the real reference (held-out real images of the
/// training split against the same test images, the value an ideal proxy would get at this sample size).</summary>
public sealed record QualityNumbers(
    int Images,
    double Recognised,
    double[] RecognisedWilson95,
    double FrechetDistance,
    double MeanClassFrechetDistance,
    double Precision,
    double Recall,
    WassersteinEstimate? FeatureWasserstein,
    WassersteinEstimate? PixelWasserstein
);

public sealed record SyntheticReport(
    string Synthetic,
    string Real,
    string Classifier,
    string FeatureSpace,
    int NearestNeighbours,
    int StoreImages,
    IReadOnlyList<ClassQuality> Classes,
    QualityNumbers Store,
    QualityNumbers? RealReference,
    double ClassifierRealAccuracy,
    TransferGap? TransferGap,
    string? RobustModel,
    string Grid,
    string Markdown
);

public static class SyntheticReportRun
{
    public static SyntheticReport Execute(
        SyntheticReportRequest r,
        IProgress<(string Phase, int Done, int Total)>? progress = null
    )
    {
        var device = torch.device(r.Device);
        using var model = Checkpoint.LoadClassifier(r.Classifier);
        model.to(device);
        int classes = model.Spec.NumClasses;
        using var store = DatasetLoader.Load(r.Synthetic, Split.Train, r.Labels, classes);
        using var realTest = DatasetLoader.Load(r.Real, Split.Test, null, classes);
        model.Spec.CheckAccepts(store.Source, store.Channels, store.Height, store.Width, store.NumClasses);
        model.Spec.CheckAccepts(realTest.Source, realTest.Channels, realTest.Height, realTest.Width, classes);
        int n = Math.Min(r.Count, Math.Min(store.Count, realTest.Count));
        if (n < 2 * classes)
            throw new ArgumentException($"{n} images per side are too few for per-class statistics");
        using var storeSample = Subset(store, n, r.Seed);
        using var realSample = Subset(realTest, n, r.Seed);

        FeatureSet Features(ImageDataset ds, string phase) =>
            FeatureSet.Extract(
                model,
                ds,
                r.BatchSize,
                device,
                progress is null ? null : new Reporter<(int, int)>(p => progress.Report((phase, p.Item1, p.Item2)))
            );
        var realFeatures = Features(realSample, "real features");
        var storeFeatures = Features(storeSample, "synthetic features");
        progress?.Report(("distances", 0, 1));
        var realPixels = PixelsByClass(realSample, classes);
        var storeNumbers = Numbers(
            storeFeatures,
            realFeatures,
            PixelsByClass(storeSample, classes),
            realPixels,
            r,
            out var perClassFd
        );
        QualityNumbers? reference = null;
        // a real data set of one split (a single file) has no held-out images to compare with
        if (DatasetLoader.HasSplit(r.Real, Split.Train) && DatasetLoader.HasSplit(r.Real, Split.Test))
            reference = Reference();
        progress?.Report(("distances", 1, 1));

        QualityNumbers Reference()
        {
            using var realTrain = DatasetLoader.Load(r.Real, Split.Train, null, classes);
            using var sample = Subset(realTrain, Math.Min(n, realTrain.Count), r.Seed + 1);
            var f = Features(sample, "reference features");
            return Numbers(f, realFeatures, PixelsByClass(sample, classes), realPixels, r, out _);
        }

        TransferGap? gap = null;
        if (r.RobustModel is not null)
        {
            using var robust = Checkpoint.LoadClassifier(r.RobustModel);
            robust.to(device);
            robust.Spec.CheckAccepts(store.Source, store.Channels, store.Height, store.Width, classes);
            int m = Math.Min(r.RobustPoints, n);
            using var realPoints = Subset(realSample, m, r.Seed + 2);
            using var proxyPoints = Subset(storeSample, m, r.Seed + 2);
            gap = TransferGaps.Measure(
                robust,
                realPoints,
                proxyPoints,
                r.RobustEpsilon,
                r.BatchSize,
                device,
                progress: progress is null
                    ? null
                    : new Reporter<(int, int)>(p => progress.Report(("minimum-norm attacks", p.Item1, p.Item2)))
            );
        }

        var counts = store.ClassCounts();
        var evaluated = new int[classes];
        var right = new int[classes];
        for (int i = 0; i < storeFeatures.Count; i++)
        {
            evaluated[storeFeatures.Labels[i]]++;
            if (storeFeatures.Predicted[i] == storeFeatures.Labels[i])
                right[storeFeatures.Labels[i]]++;
        }
        var perClass = Enumerable
            .Range(0, classes)
            .Select(c => new ClassQuality(
                realTest.ClassNames[c],
                counts[c],
                evaluated[c],
                evaluated[c] == 0 ? 0 : (double)right[c] / evaluated[c],
                Interval(right[c], evaluated[c]),
                perClassFd[c]
            ))
            .ToList();
        int realRight = Enumerable
            .Range(0, realFeatures.Count)
            .Count(i => realFeatures.Predicted[i] == realFeatures.Labels[i]);

        Directory.CreateDirectory(r.Output);
        var grid = Path.Combine(r.Output, "samples.png");
        var gridTmp = grid + ".tmp.png";
        ImageGrid.WritePng(store.SamplesPerClass(10, r.Seed), store.Height, store.Width, store.Channels, gridTmp);
        File.Move(gridTmp, grid, overwrite: true);
        var featureSpace =
            $"penultimate layer of {model.Spec} ({storeFeatures.Dimension} features), checkpoint {r.Classifier}";
        var report = new SyntheticReport(
            store.Source,
            realTest.Source,
            r.Classifier,
            featureSpace,
            r.NearestNeighbours,
            store.Count,
            perClass,
            storeNumbers,
            reference,
            (double)realRight / realFeatures.Count,
            gap,
            r.RobustModel,
            grid,
            ""
        );
        var markdown = Render(report);
        AtomicFile.WriteAllBytes(Path.Combine(r.Output, "report.md"), Encoding.UTF8.GetBytes(markdown));
        report = report with { Markdown = Path.Combine(r.Output, "report.md") };
        JsonFiles.Write(Path.Combine(r.Output, "report.json"), report);
        return report;
    }

    private static ImageDataset Subset(ImageDataset ds, int n, int seed) =>
        n < ds.Count ? ds.Split(n, seed).Taken : ds.Select(Enumerable.Range(0, ds.Count).ToArray());

    private static double[] Interval(int successes, int n)
    {
        if (n == 0)
            return [0, 1];
        var (low, high) = Stats.Wilson95(successes, n);
        return [low, high];
    }

    /// <summary>Every class's images as rows of pixels in [0, 1].</summary>
    private static List<double[,]> PixelsByClass(ImageDataset ds, int classes)
    {
        var result = new List<double[,]>();
        int per = ds.ImageBytes;
        for (int c = 0; c < classes; c++)
        {
            var members = Enumerable.Range(0, ds.Count).Where(i => ds.Labels[i] == c).ToArray();
            var rows = new double[members.Length, per];
            for (int m = 0; m < members.Length; m++)
            {
                var image = ds.Image(members[m]);
                for (int k = 0; k < per; k++)
                    rows[m, k] = image[k] / 255.0;
            }
            result.Add(rows);
        }
        return result;
    }

    private static QualityNumbers Numbers(
        FeatureSet sample,
        FeatureSet real,
        List<double[,]> samplePixels,
        List<double[,]> realPixels,
        SyntheticReportRequest r,
        out double[] perClassFd
    )
    {
        int classes = realPixels.Count;
        perClassFd = new double[classes];
        var sampleByClass = new List<double[,]>();
        var realByClass = new List<double[,]>();
        for (int c = 0; c < classes; c++)
        {
            var a = sample.OfClass(c);
            var b = real.OfClass(c);
            sampleByClass.Add(a);
            realByClass.Add(b);
            perClassFd[c] = a.GetLength(0) >= 2 && b.GetLength(0) >= 2 ? FrechetDistance.Between(a, b) : double.NaN;
        }
        var (precision, recall) = PrecisionRecall.Compute(real.Features, sample.Features, r.NearestNeighbours);
        int right = Enumerable.Range(0, sample.Count).Count(i => sample.Predicted[i] == sample.Labels[i]);
        // exact transport between equal per-class subsamples of at most half the smallest class, so that repeated
        // subsamples differ and their spread is an interval
        int smallest = sampleByClass.Concat(realByClass).Select(x => x.GetLength(0)).DefaultIfEmpty(0).Min();
        int m = Math.Min(r.WassersteinPerClass, r.WassersteinRepeats > 1 ? smallest / 2 : smallest);
        WassersteinEstimate? W(List<double[,]> a, List<double[,]> b) =>
            m >= 2 ? ConditionalWasserstein.Estimate(a, b, m, r.WassersteinRepeats, r.Seed) : null;
        return new QualityNumbers(
            sample.Count,
            (double)right / sample.Count,
            Interval(right, sample.Count),
            FrechetDistance.Between(sample.Features, real.Features),
            perClassFd.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average(),
            precision,
            recall,
            W(sampleByClass, realByClass),
            W(samplePixels, realPixels)
        );
    }

    private static string Render(SyntheticReport r)
    {
        var c = CultureInfo.InvariantCulture;
        string P(double v) => (100 * v).ToString("F1", c);
        string F(double v) => v.ToString("F2", c);
        string Ci(double[] w) => $"{P(w[0])}-{P(w[1])}";
        var sb = new StringBuilder();
        sb.AppendLine($"# Synthetic store quality: {Path.GetFileName(r.Synthetic)}");
        sb.AppendLine();
        sb.AppendLine($"- store: `{r.Synthetic}`, {r.StoreImages:N0} images");
        sb.AppendLine($"- real reference: test split of `{r.Real}`");
        sb.AppendLine(
            $"- feature space: {r.FeatureSpace}; it recognises {P(r.ClassifierRealAccuracy)}% of the real test images"
        );
        sb.AppendLine(
            "- Fréchet distances are comparable only within this feature space and at the same number of images; "
                + $"precision and recall (Kynkäänniemi et al. 2019) use k = {r.NearestNeighbours}"
        );
        sb.AppendLine();
        sb.AppendLine(
            "| images | n | recognised % (95% CI) | Fréchet distance | mean per-class FD | precision | recall |"
        );
        sb.AppendLine("|---|---|---|---|---|---|---|");
        void Row(string name, QualityNumbers q) =>
            sb.AppendLine(
                $"| {name} | {q.Images:N0} | {P(q.Recognised)} ({Ci(q.RecognisedWilson95)}) | {F(q.FrechetDistance)} | "
                    + $"{F(q.MeanClassFrechetDistance)} | {q.Precision.ToString("F3", c)} | "
                    + $"{q.Recall.ToString("F3", c)} |"
            );
        Row("synthetic store", r.Store);
        if (r.RealReference is { } reference)
            Row("held-out real (training split): the ideal proxy", reference);
        sb.AppendLine();
        string Wd(WassersteinEstimate? w) =>
            w is null ? "-" : $"{w.Mean.ToString("F3", c)} ({w.Low.ToString("F3", c)}-{w.High.ToString("F3", c)})";
        if (r.Store.FeatureWasserstein is { } fw)
        {
            sb.AppendLine(
                $"Class-conditional Wasserstein distance W1 (exact transport between {fw.PerClassSamples} images of "
                    + $"each class per side, averaged over classes; mean and 95% range over {fw.Repeats} subsamples; "
                    + "pixels in [0, 1], Euclidean):"
            );
            sb.AppendLine();
            sb.AppendLine("| images | W1 in the feature space | W1 in pixel space |");
            sb.AppendLine("|---|---|---|");
            sb.AppendLine($"| synthetic store | {Wd(r.Store.FeatureWasserstein)} | {Wd(r.Store.PixelWasserstein)} |");
            if (r.RealReference is { } q)
                sb.AppendLine($"| held-out real | {Wd(q.FeatureWasserstein)} | {Wd(q.PixelWasserstein)} |");
            sb.AppendLine();
        }
        if (r.TransferGap is { } g)
        {
            sb.AppendLine(
                "Transfer of robustness (the bound of docs/PROXIES.md), model "
                    + $"`{r.RobustModel}`, {g.Points} points per "
                    + "side (class-balanced): average l-2 distance to the nearest adversarial example found by FAB "
                    + "(100 iterations; an upper bound per point), and robust accuracy at eps "
                    + $"{g.Epsilon.ToString("0.###", c)} read off the same distances:"
            );
            sb.AppendLine();
            sb.AppendLine("| | real test images | proxy images | difference | W1 in pixel space (l-2) |");
            sb.AppendLine("|---|---|---|---|---|");
            sb.AppendLine(
                $"| average robustness | {g.MeanDistanceReal.ToString("F3", c)} | "
                    + $"{g.MeanDistanceProxy.ToString("F3", c)} | "
                    + $"{g.Gap.ToString("F3", c)} | {Wd(r.Store.PixelWasserstein)} |"
            );
            sb.AppendLine(
                $"| robust accuracy % | {P(g.RobustReal)} | {P(g.RobustProxy)} | "
                    + $"{P(Math.Abs(g.RobustReal - g.RobustProxy))} | |"
            );
            if (g.NotFoundReal + g.NotFoundProxy > 0)
                sb.AppendLine(
                    $"\nFAB found no adversarial example for {g.NotFoundReal} real and {g.NotFoundProxy} proxy points; "
                        + "they count at the largest distance found."
                );
            sb.AppendLine();
        }
        sb.AppendLine("| class | images in store | evaluated | recognised % (95% CI) | class-conditional FD |");
        sb.AppendLine("|---|---|---|---|---|");
        foreach (var q in r.Classes)
            sb.AppendLine(
                $"| {q.Name} | {q.Images:N0} | {q.Evaluated:N0} | {P(q.Recognised)} ({Ci(q.RecognisedWilson95)}) | "
                    + $"{F(q.FrechetDistance)} |"
            );
        sb.AppendLine();
        sb.AppendLine($"![samples, a row per class]({Path.GetFileName(r.Grid)})");
        return sb.ToString();
    }
}

/// <summary>Scores a store with a real-vs-synthetic discriminator (class 0 real, as `arc` trains them): each image's
/// probability of being real, written as float32 .npy for `train --synthetic-scores` (adaptive sampling).</summary>
public sealed record ScoreRequest(
    string Discriminator,
    string Synthetic,
    string? Output = null,
    string? Labels = null,
    int BatchSize = 500,
    string Device = "cpu"
);

public sealed record ScoreOutcome(string Scores, int Images, double Mean, double Min, double Max);

public static class ScoreRun
{
    public static ScoreOutcome Execute(ScoreRequest r, IProgress<(int Done, int Total)>? progress = null)
    {
        var device = torch.device(r.Device);
        using var model = Checkpoint.LoadClassifier(r.Discriminator);
        if (model.Spec.NumClasses != 2)
            throw new DataFormatException(
                r.Discriminator,
                $"has {model.Spec.NumClasses} classes; a real-vs-synthetic discriminator has 2 (0 real, 1 synthetic)"
            );
        model.to(device);
        model.eval();
        using var store = DatasetLoader.Load(r.Synthetic, Split.Train, r.Labels);
        // the store's own labels are not the discriminator's classes: only the image shape must fit
        model.Spec.CheckAccepts(store.Source, store.Channels, store.Height, store.Width, 2);
        var scores = new float[store.Count];
        using (torch.no_grad())
            BatchSampler.ForEachInOrder(
                store,
                r.BatchSize,
                device,
                (x, _, at, _) =>
                    torch.nn.functional.softmax(model.call(x), 1).select(1, 0).cpu().data<float>().CopyTo(scores, at),
                progress
            );
        var output = r.Output ?? Path.ChangeExtension(r.Synthetic, null) + ".scores.npy";
        Npy.WriteFloats(output, [scores.Length], scores);
        return new ScoreOutcome(output, scores.Length, scores.Average(), scores.Min(), scores.Max());
    }
}
