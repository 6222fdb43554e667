using System.Security.Cryptography;
using ProxyRobust.Core;
using ProxyRobust.Data;

namespace ProxyRobust.Proxy;

/// <summary>
/// The data of a real-vs-synthetic discriminator (Sehwag et al. 2022, section 3, "ARC"): class 0 real, class 1
/// synthetic, as many of each, written as an images .npy + labels .npy that any training run reads. The images are a
/// seeded, class-balanced choice from each side, so the same seed gives the same set, and its SHA-256 names the
/// discriminators trained on it in a cache.
/// </summary>
public static class DiscriminationData
{
    public static readonly string[] ClassNames = ["real", "synthetic"];

    /// <summary>Writes PATH.npy and PATH.labels.npy (unless already there with the same content hash) and returns the
    /// hash of images and labels.</summary>
    public static string Write(ImageDataset real, ImageDataset synthetic, int perSide, int seed, string path)
    {
        if ((real.Height, real.Width, real.Channels) != (synthetic.Height, synthetic.Width, synthetic.Channels))
            throw new DataFormatException(
                synthetic.Source,
                $"synthetic images are {synthetic.Height}x{synthetic.Width}x{synthetic.Channels}, real ones "
                    + $"{real.Height}x{real.Width}x{real.Channels}"
            );
        foreach (var side in new[] { real, synthetic })
            if (side.Count < perSide)
                throw new DataFormatException(side.Source, $"{side.Count} images, fewer than the {perSide} asked for");
        using var r = perSide < real.Count ? real.Split(perSide, seed).Taken : real.Select(All(real.Count));
        using var s =
            perSide < synthetic.Count
                ? synthetic.Split(perSide, Seeds.Derive(seed, 1)).Taken
                : synthetic.Select(All(synthetic.Count));
        int per = real.ImageBytes;
        var images = new byte[2L * perSide * per];
        for (int i = 0; i < perSide; i++)
        {
            r.Image(i).CopyTo(images.AsSpan(i * per, per));
            s.Image(i).CopyTo(images.AsSpan((perSide + i) * per, per));
        }
        var labels = Enumerable.Range(0, 2 * perSide).Select(i => i < perSide ? 0 : 1).ToArray();
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(images);
        sha.AppendData(labels.SelectMany(BitConverter.GetBytes).ToArray());
        var hash = Convert.ToHexString(sha.GetHashAndReset());
        var stem = Path.ChangeExtension(path, null);
        var hashFile = stem + ".sha256";
        if (!(File.Exists(hashFile) && File.ReadAllText(hashFile).Trim() == hash))
        {
            Npy.Write(stem + ".npy", "|u1", [2 * perSide, real.Height, real.Width, real.Channels], images);
            Npy.WriteLabels(stem + ".labels.npy", labels);
            AtomicFile.WriteAllText(hashFile, hash);
        }
        return hash;
    }

    private static int[] All(int n) => Enumerable.Range(0, n).ToArray();
}

/// <summary>
/// ARC: the area under robust discrimination accuracy against the perturbation budget, with the budget axis normalised
/// to [0, 1] by the largest budget (eps / eps_max) and accuracy as a fraction, by the trapezoid rule over the measured
/// budgets, of accuracies floored at chance (0.5, see Experiments.ArcRun). A proxy a robust discriminator cannot
/// tell from the real data scores 0.5; one it always tells apart scores 1. Lower is closer to the real distribution.
/// </summary>
public static class Arc
{
    public static double Area(IReadOnlyList<double> budgets, IReadOnlyList<double> accuracies)
    {
        if (budgets.Count != accuracies.Count || budgets.Count < 2)
            throw new ArgumentException("ARC needs at least two budgets, each with an accuracy");
        for (int i = 1; i < budgets.Count; i++)
            if (!(budgets[i] > budgets[i - 1]))
                throw new ArgumentException("budgets must increase");
        if (budgets[0] < 0)
            throw new ArgumentException("budgets must be non-negative");
        double max = budgets[^1],
            min = budgets[0];
        double area = 0;
        for (int i = 1; i < budgets.Count; i++)
            area += (budgets[i] - budgets[i - 1]) * (accuracies[i] + accuracies[i - 1]) / 2;
        return area / (max - min);
    }
}
