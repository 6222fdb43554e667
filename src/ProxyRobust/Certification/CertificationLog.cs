using System.Text;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using static TorchSharp.torch;

namespace ProxyRobust.Certification;

/// <summary>What CERTIFY needs besides the model and the points (Cohen et al.'s certify.py arguments).</summary>
public sealed record CertifySettings(double Sigma, int N0, int N, double Alpha, int BatchSize = 100, long Seed = 0);

/// <summary>
/// A resumable certification: each point is appended to OUT.partial as it is certified; a later run with
/// resume continues from it, and because every point has its own seed it ends with the same certificates as an
/// uninterrupted run. The finished TSV (the original tool's columns) is written atomically and the partial file
/// removed. Used by the certify verb and by experiments alike.
/// </summary>
public static class CertificationLog
{
    public static string PartialPath(string tsvPath) => tsvPath + ".partial";

    /// <returns>every point's certificate in index order, and how many of them came from an earlier run</returns>
    public static (IReadOnlyList<CertifiedExample> Examples, int Resumed) Run(
        Classifier model,
        ImageDataset points,
        CertifySettings settings,
        Device device,
        string tsvPath,
        bool resume,
        IProgress<(int Done, int Total)>? progress = null,
        CancellationToken cancel = default
    )
    {
        var partial = PartialPath(tsvPath);
        var earlier = resume && File.Exists(partial) ? CertificationRun.ReadTsv(partial, points.Count) : [];
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(partial))!);
        File.WriteAllText(
            partial,
            CertificationRun.TsvHeader + "\n" + string.Concat(earlier.Select(e => CertificationRun.TsvLine(e) + "\n"))
        );
        var examples = new List<CertifiedExample>(earlier);
        progress?.Report((examples.Count, points.Count));
        foreach (
            var e in CertificationRun.Certify(
                model,
                points,
                settings.Sigma,
                settings.N0,
                settings.N,
                settings.Alpha,
                settings.BatchSize,
                device,
                settings.Seed,
                cancel,
                skip: earlier.Select(x => x.Index).ToHashSet()
            )
        )
        {
            examples.Add(e);
            File.AppendAllText(partial, CertificationRun.TsvLine(e) + "\n");
            progress?.Report((examples.Count, points.Count));
        }
        var ordered = examples.OrderBy(e => e.Index).ToList();
        var text = new StringBuilder(CertificationRun.TsvHeader + "\n");
        foreach (var e in ordered)
            text.Append(CertificationRun.TsvLine(e)).Append('\n');
        AtomicFile.WriteAllText(tsvPath, text.ToString());
        File.Delete(partial);
        return (ordered, earlier.Count);
    }
}
