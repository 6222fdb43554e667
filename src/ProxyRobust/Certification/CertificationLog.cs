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

    /// <summary>The partial file of one rank of a job (rank 0's is the single-process one).</summary>
    private static string PartialPath(string tsvPath, int rank) =>
        rank == 0 ? PartialPath(tsvPath) : $"{PartialPath(tsvPath)}.{rank}";

    /// <summary>
    /// Certifies the points (resuming from the partial files when asked) and writes the TSV. In a job of several
    /// ranks each rank certifies every Size-th point not certified yet, appending to its own partial file, and rank 0
    /// gathers them: since every point has its own seed, the certificates equal a single process's.
    /// </summary>
    /// <returns>every point's certificate in index order (on rank 0; the other ranks get their own), and how many of
    /// them came from an earlier run</returns>
    public static (IReadOnlyList<CertifiedExample> Examples, int Resumed) Run(
        Classifier model,
        ImageDataset points,
        CertifySettings settings,
        Device device,
        string tsvPath,
        bool resume,
        IProgress<(int Done, int Total)>? progress = null,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        var job = ranks ?? SingleProcess.Instance;
        var partial = PartialPath(tsvPath, job.Rank);
        var folder = Path.GetDirectoryName(Path.GetFullPath(tsvPath))!;
        // every partial file of an earlier run, whatever its number of ranks
        var partials = Directory.Exists(folder)
            ? Directory
                .GetFiles(folder, Path.GetFileName(PartialPath(tsvPath)) + "*")
                .Where(f => f == Path.GetFullPath(PartialPath(tsvPath)) || IsRankPartial(f, tsvPath))
                .Order(StringComparer.Ordinal)
                .ToList()
            : [];
        var earlier = resume
            ? partials
                .SelectMany(f => CertificationRun.ReadTsv(f, points.Count))
                .DistinctBy(e => e.Index)
                .OrderBy(e => e.Index)
                .ToList()
            : [];
        job.Barrier(); // all ranks have read the partial files before any rewrites its own
        Directory.CreateDirectory(folder);
        // rank 0 keeps what was done before; the others start empty
        File.WriteAllText(
            partial,
            CertificationRun.TsvHeader
                + "\n"
                + (job.IsRoot ? string.Concat(earlier.Select(e => CertificationRun.TsvLine(e) + "\n")) : "")
        );
        if (job.IsRoot)
            foreach (var stale in partials.Where(f => IsRankPartial(f, tsvPath) && RankOf(f) >= job.Size))
                File.Delete(stale);
        var done = earlier.Select(x => x.Index).ToHashSet();
        var mine = Enumerable
            .Range(0, points.Count)
            .Where(i => !done.Contains(i))
            .Where((_, k) => k % job.Size == job.Rank)
            .ToHashSet();
        var examples = new List<CertifiedExample>(job.IsRoot ? earlier : []);
        progress?.Report((earlier.Count, points.Count));
        int certified = 0;
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
                skip: Enumerable.Range(0, points.Count).Where(i => !mine.Contains(i)).ToHashSet()
            )
        )
        {
            examples.Add(e);
            File.AppendAllText(partial, CertificationRun.TsvLine(e) + "\n");
            certified++;
            // rank 0 sees its own share; the others advance at the same pace
            progress?.Report((Math.Min(points.Count, earlier.Count + certified * job.Size), points.Count));
        }
        if (job.Size > 1)
        {
            var mineText = string.Concat(
                examples.Skip(job.IsRoot ? earlier.Count : 0).Select(CertificationRun.TsvLine).Select(l => l + "\n")
            );
            var all = job.GatherToRoot(Encoding.UTF8.GetBytes(mineText));
            if (all is null)
                return (examples, 0);
            examples.AddRange(
                all.Skip(1)
                    .SelectMany(
                        (bytes, r) =>
                            CertificationRun.ParseTsv(Encoding.UTF8.GetString(bytes), $"rank {r + 1}", points.Count)
                    )
            );
        }
        var ordered = examples.OrderBy(e => e.Index).ToList();
        if (ordered.Count != points.Count || ordered.Select(e => e.Index).Distinct().Count() != points.Count)
            throw new InvalidOperationException(
                $"{ordered.Count} certificates for {points.Count} points: the ranks' shares did not add up"
            );
        var text = new StringBuilder(CertificationRun.TsvHeader + "\n");
        foreach (var e in ordered)
            text.Append(CertificationRun.TsvLine(e)).Append('\n');
        AtomicFile.WriteAllText(tsvPath, text.ToString());
        for (int r = 0; r < job.Size; r++)
            File.Delete(PartialPath(tsvPath, r));
        return (ordered, earlier.Count);
    }

    private static bool IsRankPartial(string file, string tsvPath) =>
        Path.GetFileName(file).StartsWith(Path.GetFileName(PartialPath(tsvPath)) + ".", StringComparison.Ordinal)
        && RankOf(file) > 0;

    private static int RankOf(string file) => int.TryParse(Path.GetExtension(file).TrimStart('.'), out int r) ? r : -1;
}
