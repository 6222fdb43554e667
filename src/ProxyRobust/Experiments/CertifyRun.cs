using ProxyRobust.Certification;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Native;
using ProxyRobust.Reporting;
using TorchSharp;

namespace ProxyRobust.Experiments;

/// <summary>What the certify verb asks for: the base classifier, the points, CERTIFY's settings and where results
/// go.</summary>
public sealed record CertifyRequest
{
    public required string Checkpoint { get; init; }
    public string? Data { get; init; }
    public Split Split { get; init; } = Split.Test;
    public string? Labels { get; init; }
    public int? Examples { get; init; }
    public required CertifySettings Settings { get; init; }
    public string Device { get; init; } = "cpu";

    /// <summary>Per-point TSV (the original tool's columns); the summary JSON and the plot go beside it unless
    /// named.</summary>
    public required string Output { get; init; }
    public string? Json { get; init; }
    public string? Plot { get; init; }

    /// <summary>Summary JSONs of other models to draw on the same plot.</summary>
    public IReadOnlyList<string> Compare { get; init; } = [];

    /// <summary>This model's name in the plot legend (default: the checkpoint's folder or file name).</summary>
    public string? Label { get; init; }
    public string? SavePoints { get; init; }
    public bool Resume { get; init; }

    public string JsonPath => Json ?? Path.ChangeExtension(Output, ".json");
    public string PlotPath => Plot ?? Path.ChangeExtension(Output, ".png");
}

public sealed record RadiusAccuracy(double Radius, double Accuracy);

/// <summary>The certify verb's summary JSON.</summary>
public sealed record CertificationRecord(
    string Checkpoint,
    string Data,
    int Points,
    double Sigma,
    int N0,
    int N,
    double Alpha,
    long Seed,
    double AbstentionRate,
    double AverageCertifiedRadius,
    IReadOnlyList<RadiusAccuracy> CertifiedAccuracy,
    double Seconds,
    OneDnnState? OneDnn = null
);

/// <summary>What a certification produced; <see cref="Summary"/> is null on the ranks other than 0 of a job.</summary>
public sealed record CertifyOutcome(string Model, CertificationSummary? Summary, int Resumed, CertifyRequest Request);

/// <summary>The certify verb as one library call: resumable CERTIFY over the points, TSV + summary JSON +
/// plot.</summary>
public static class CertifyRun
{
    public static CertifyOutcome Execute(
        CertifyRequest r,
        IProgress<(int Done, int Total)>? progress = null,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        var s = r.Settings;
        if (!(s.Sigma > 0))
            throw new ArgumentException($"sigma must be positive, got {s.Sigma}");
        if (s.Alpha is <= 0 or >= 1)
            throw new ArgumentException($"alpha must be in (0,1), got {s.Alpha}");
        // Read the curves to compare with first: a bad file fails before the long certification, not after.
        var others = r
            .Compare.Select(f =>
                (
                    Label: Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(f)))
                        + "/"
                        + Path.GetFileNameWithoutExtension(f),
                    Curve: ReadCurve(f)
                )
            )
            .ToList();
        using var opened = ModelAndData.Open(
            r.Checkpoint,
            ema: false,
            r.Data,
            r.Split,
            r.Labels,
            r.Examples,
            (int)s.Seed,
            torch.device(r.Device)
        );
        var (model, points) = (opened.Model, opened.Points);
        if (r.SavePoints is { } pointsPath && job.IsRoot)
            opened.SavePoints(pointsPath);
        var (examples, resumed) = CertificationLog.Run(
            model,
            points,
            s,
            torch.device(r.Device),
            r.Output,
            r.Resume,
            progress,
            cancel,
            job
        );
        if (!job.IsRoot) // rank 0 writes the job's summary and plot
            return new CertifyOutcome(model.Spec.ToString(), null, 0, r);
        var summary = CertificationRun.Summarise(examples, s.Sigma, s.N0, s.N, s.Alpha);
        JsonFiles.Write(
            r.JsonPath,
            new CertificationRecord(
                r.Checkpoint,
                points.Source,
                summary.Points,
                s.Sigma,
                s.N0,
                s.N,
                s.Alpha,
                s.Seed,
                summary.AbstentionRate,
                summary.AverageCertifiedRadius,
                summary.CertifiedAccuracy.Select(c => new RadiusAccuracy(c.Radius, c.Accuracy)).ToList(),
                examples.Sum(e => e.Seconds),
                TorchRuntime.OneDnn
            )
        );
        var mine = r.Label ?? Path.GetFileName(Path.GetFullPath(r.Checkpoint).TrimEnd('/'));
        Plots.CertifiedAccuracy(
            new[] { ($"{mine} (sigma {s.Sigma})", WithIntervals(summary.CertifiedAccuracy, summary.Points)) }.Concat(
                others
            ),
            r.PlotPath
        );
        return new CertifyOutcome(model.Spec.ToString(), summary, resumed, r);
    }

    /// <summary>The (radius, certified accuracy) curve of a summary JSON written by the certify verb.</summary>
    public static IReadOnlyList<(double Radius, Estimate Accuracy)> ReadCurve(string jsonPath)
    {
        var record = JsonFiles.Read<CertificationRecord>(jsonPath);
        if (record.CertifiedAccuracy is null)
            throw new DataFormatException(jsonPath, "no 'certifiedAccuracy' array: not a certification summary");
        return WithIntervals(record.CertifiedAccuracy.Select(p => (p.Radius, p.Accuracy)).ToList(), record.Points);
    }

    /// <summary>Certified accuracies on <paramref name="points"/> points, each with its Wilson 95% interval.</summary>
    public static IReadOnlyList<(double Radius, Estimate Accuracy)> WithIntervals(
        IReadOnlyList<(double Radius, double Accuracy)> curve,
        int points
    ) =>
        curve
            .Select(c => (c.Radius, Estimate.Wilson(c.Accuracy, (int)Math.Round(c.Accuracy * points), points)))
            .ToList();
}
