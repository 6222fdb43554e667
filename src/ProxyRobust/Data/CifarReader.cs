using ProxyRobust.Core;

namespace ProxyRobust.Data;

/// <summary>CIFAR-10 and CIFAR-100 binary batches: per record the label byte(s), then 3072 bytes of 32x32 planar R, G,
/// B.</summary>
public static class CifarReader
{
    public static readonly string[] Cifar10Classes =
    [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];

    private const int Side = 32,
        Pixels = Side * Side,
        ImageBytes = Pixels * 3;

    /// <summary>Reads and concatenates batches. CIFAR-100 records carry (coarse, fine) labels; the fine label is
    /// used.</summary>
    public static ImageDataset Read(IReadOnlyList<string> files, bool cifar100)
    {
        if (files.Count == 0)
            throw new ArgumentException("no CIFAR batch files given", nameof(files));
        int labelBytes = cifar100 ? 2 : 1,
            record = labelBytes + ImageBytes,
            numClasses = cifar100 ? 100 : 10;
        long total = 0;
        foreach (var f in files)
        {
            if (!File.Exists(f))
                throw new DataFormatException(f, "file not found");
            long len = new FileInfo(f).Length;
            if (len == 0)
                throw new DataFormatException(f, "file is empty");
            if (len % record != 0)
                throw new DataFormatException(
                    f,
                    $"size {len} bytes is not a multiple of the {(cifar100 ? "CIFAR-100" : "CIFAR-10")} record size "
                        + $"{record} (truncated or wrong format?)"
                );
            total += len / record;
        }
        var images = new byte[checked(total * ImageBytes)];
        var labels = new int[total];
        long n = 0;
        foreach (var f in files)
        {
            var raw = File.ReadAllBytes(f);
            for (long r = 0; r < raw.LongLength / record; r++, n++)
            {
                var rec = raw.AsSpan(checked((int)(r * record)), record);
                int label = rec[labelBytes - 1];
                if (label >= numClasses)
                    throw new DataFormatException(f, $"label {label} in record {r} is outside 0..{numClasses - 1}");
                labels[n] = label;
                // planar CHW -> interleaved HWC
                var dst = images.AsSpan(checked((int)(n * ImageBytes)), ImageBytes);
                var src = rec[labelBytes..];
                for (int p = 0; p < Pixels; p++)
                {
                    dst[3 * p] = src[p];
                    dst[3 * p + 1] = src[Pixels + p];
                    dst[3 * p + 2] = src[2 * Pixels + p];
                }
            }
        }
        var names =
            ReadClassNames(files[0], cifar100)
            ?? (cifar100 ? Enumerable.Range(0, 100).Select(i => i.ToString()).ToArray() : Cifar10Classes);
        return new ImageDataset(
            files.Count == 1 ? files[0] : Path.GetDirectoryName(files[0]) ?? files[0],
            new ArrayImageStore(images, ImageBytes),
            labels,
            Side,
            Side,
            3,
            names
        );
    }

    /// <summary>Writes a CIFAR-10 (or -100, fine label doubled as coarse) batch file; used by tests and
    /// tools.</summary>
    public static void Write(string path, ReadOnlySpan<byte> hwcImages, ReadOnlySpan<int> labels, bool cifar100 = false)
    {
        int labelBytes = cifar100 ? 2 : 1;
        var buf = new byte[labels.Length * (labelBytes + ImageBytes)];
        for (int n = 0; n < labels.Length; n++)
        {
            var rec = buf.AsSpan(n * (labelBytes + ImageBytes), labelBytes + ImageBytes);
            rec[0] = (byte)labels[n];
            if (cifar100)
                rec[1] = (byte)labels[n];
            var src = hwcImages.Slice(n * ImageBytes, ImageBytes);
            var dst = rec[labelBytes..];
            for (int p = 0; p < Pixels; p++)
            {
                dst[p] = src[3 * p];
                dst[Pixels + p] = src[3 * p + 1];
                dst[2 * Pixels + p] = src[3 * p + 2];
            }
        }
        AtomicFile.WriteAllBytes(path, buf);
    }

    private static string[]? ReadClassNames(string batchFile, bool cifar100)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(batchFile))!;
        var meta = Path.Combine(dir, cifar100 ? "fine_label_names.txt" : "batches.meta.txt");
        if (!File.Exists(meta))
            return null;
        var names = File.ReadAllLines(meta).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        return names.Length == (cifar100 ? 100 : 10) ? names : null;
    }
}
