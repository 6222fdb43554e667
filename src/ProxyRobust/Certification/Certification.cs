using System.Diagnostics;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Certification;

public sealed record CertifiedExample(
    int Index,
    int Label,
    int Prediction,
    double Radius,
    bool Correct,
    double Seconds
);

public sealed record CertificationSummary(
    double Sigma,
    int N0,
    int N,
    double Alpha,
    int Points,
    double AbstentionRate,
    double AverageCertifiedRadius,
    IReadOnlyList<(double Radius, double Accuracy)> CertifiedAccuracy
);

/// <summary>Certifies a data set point by point (Cohen et al.'s certify.py) and summarises the certificates.</summary>
public static class CertificationRun
{
    public static IEnumerable<CertifiedExample> Certify(
        Classifier model,
        ImageDataset data,
        double sigma,
        int n0,
        int n,
        double alpha,
        int batchSize,
        Device device,
        long seed,
        CancellationToken cancel = default,
        IReadOnlySet<int>? skip = null
    )
    {
        var smoothed = new SmoothedClassifier(model, model.Spec.NumClasses, sigma, batchSize);
        var single = new HostBatch(1, data.Channels, data.Height, data.Width);
        for (int i = 0; i < data.Count; i++)
        {
            cancel.ThrowIfCancellationRequested();
            if (skip?.Contains(i) == true)
                continue; // certified before an interruption: each point has its own seed
            var clock = Stopwatch.StartNew();
            BatchSampler.WriteImage(data.Image(i), single.Images, data.Height, data.Width, data.Channels, 0, 0, false);
            single.Labels[0] = data.Labels[i];
            single.Count = 1;
            using var scope = NewDisposeScope();
            var (x, _) = single.ToTensors(device);
            var c = smoothed.Certify(x[0], n0, n, alpha, Seeds.Derive(seed, i));
            yield return new CertifiedExample(
                i,
                data.Labels[i],
                c.Prediction,
                c.Radius,
                c.Prediction == data.Labels[i],
                clock.Elapsed.TotalSeconds
            );
        }
    }

    public const string TsvHeader = "idx\tlabel\tpredict\tradius\tcorrect\ttime";

    public static string TsvLine(CertifiedExample e) =>
        string.Create(
            System.Globalization.CultureInfo.InvariantCulture,
            $"{e.Index}\t{e.Label}\t{e.Prediction}\t{e.Radius:R}\t{(e.Correct ? 1 : 0)}\t{e.Seconds:F3}"
        );

    /// <summary>
    /// Reads the per-example lines of a (possibly interrupted) certification TSV. A last line without its
    /// newline was cut by the interruption and is dropped; any other malformed line is an error naming the file.
    /// </summary>
    public static List<CertifiedExample> ReadTsv(string path, int points) =>
        ParseTsv(File.ReadAllText(path), path, points);

    /// <summary>As <see cref="ReadTsv"/>, from text (<paramref name="source"/> names it in errors).</summary>
    public static List<CertifiedExample> ParseTsv(string text, string source, int points)
    {
        string path = source;
        var lines = text.Split('\n').ToList();
        if (lines.Count > 0 && !text.EndsWith('\n'))
            lines.RemoveAt(lines.Count - 1); // cut mid-line
        var result = new List<CertifiedExample>();
        foreach (var (line, number) in lines.Select((l, k) => (l, k + 1)))
        {
            if (line.Length == 0 || line.StartsWith("idx", StringComparison.Ordinal))
                continue;
            var f = line.Split('\t');
            var inv = System.Globalization.CultureInfo.InvariantCulture;
            if (
                f.Length != 6
                || !int.TryParse(f[0], inv, out int idx)
                || !int.TryParse(f[1], inv, out int label)
                || !int.TryParse(f[2], inv, out int pred)
                || !double.TryParse(f[3], inv, out double radius)
                || !double.IsFinite(radius)
                || !double.TryParse(f[5], inv, out double secs)
                || (f[4] != "0" && f[4] != "1")
            )
                throw new DataFormatException(path, $"line {number} is not 'idx label predict radius correct time'");
            if (idx < 0 || idx >= points)
                throw new DataFormatException(
                    path,
                    $"line {number}: index {idx} outside the {points} points being certified"
                );
            result.Add(new CertifiedExample(idx, label, pred, radius, f[4] == "1", secs));
        }
        return result;
    }

    /// <summary>Certified accuracy at each radius (correct and radius &gt;= r), the average certified radius (0 for
    /// wrong or abstained) and the abstention rate.</summary>
    public static CertificationSummary Summarise(
        IReadOnlyList<CertifiedExample> examples,
        double sigma,
        int n0,
        int n,
        double alpha,
        IEnumerable<double>? radii = null
    )
    {
        var grid = (radii ?? Enumerable.Range(0, 17).Select(k => k * 0.25)).ToList();
        int total = examples.Count;
        var accuracy = grid.Select(r =>
                (r, total == 0 ? 0 : (double)examples.Count(e => e.Correct && e.Radius >= r) / total)
            )
            .ToList();
        double acr = total == 0 ? 0 : examples.Sum(e => e.Correct ? e.Radius : 0) / total;
        double abstain = total == 0 ? 0 : (double)examples.Count(e => e.Prediction < 0) / total;
        return new CertificationSummary(sigma, n0, n, alpha, total, abstain, acr, accuracy);
    }
}
