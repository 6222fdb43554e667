using System.Buffers.Binary;
using System.IO.Compression;
using ProxyRobust.Core;
using ProxyRobust.Data;

namespace ProxyRobust.Generative;

/// <summary>How floating-point images map to pixels: [0, 1] (the default) or [-1, 1] (a generator's tanh
/// output).</summary>
public enum FloatRange
{
    ZeroOne,
    MinusOneOne,
}

/// <summary>
/// Images made elsewhere, to become a synthetic store: an image folder (one sub-folder per class), an images .npy
/// (uint8 or float, NHWC, NCHW or NHW) with labels, an .npz holding both (keys image/images/x and label/labels/y, as
/// the released DDPM samples of Wang et al. 2023), or a raw uint8 .bin (the paper's released CIFAR-10 samples) with a
/// label .npy.
/// </summary>
public sealed record ImportRequest(
    string From,
    string Output,
    string? Labels = null,
    (int H, int W, int C)? RawShape = null,
    int? Classes = null,
    FloatRange FloatRange = FloatRange.ZeroOne,
    bool Unlabeled = false
);

public sealed record ImportOutcome(
    string Store,
    string? LabelsPath,
    long Images,
    int Height,
    int Width,
    int Channels,
    int[] ClassCounts,
    string Conversion
);

/// <summary>Converts and validates; writes STORE.npy (uint8 NHWC) and STORE.labels.npy (int64) through temporary files,
/// so a failed import leaves nothing behind and an existing store is never half-overwritten.</summary>
public static class SyntheticImport
{
    private static readonly string[] ImageKeys = ["image", "images", "x", "data"];
    private static readonly string[] LabelKeys = ["label", "labels", "y", "targets"];

    public static ImportOutcome Execute(ImportRequest r, IProgress<(long Done, long Total)>? progress = null)
    {
        var output = r.Output.EndsWith(".npy", StringComparison.OrdinalIgnoreCase) ? r.Output : r.Output + ".npy";
        if (Path.GetFullPath(output) == Path.GetFullPath(r.From))
            throw new ArgumentException("the store must not overwrite the file it is imported from");
        var labelsOut = Path.ChangeExtension(output, null) + ".labels.npy";
        if (Directory.Exists(r.From))
            return FromFolder(r, output, labelsOut);
        if (!File.Exists(r.From))
            throw new DataFormatException(r.From, "no such file or folder");
        var ext = Path.GetExtension(r.From).ToLowerInvariant();
        return ext switch
        {
            ".npz" => FromNpz(r, output, labelsOut, progress),
            ".npy" => FromArrays(
                r,
                NpyArray.OpenFile(r.From),
                LabelsFromFile(r, required: !r.Unlabeled),
                output,
                labelsOut,
                progress
            ),
            ".bin" => FromArrays(
                r,
                NpyArray.RawBytes(
                    r.From,
                    r.RawShape ?? throw new ArgumentException($"{r.From}: a raw .bin needs the image shape (H x W x C)")
                ),
                LabelsFromFile(r, required: !r.Unlabeled),
                output,
                labelsOut,
                progress
            ),
            _ => throw new DataFormatException(
                r.From,
                "unknown format: expected an image folder, .npy, .npz or raw .bin"
            ),
        };
    }

    private static ImportOutcome FromFolder(ImportRequest r, string output, string labelsOut)
    {
        using var ds = ImageFolderReader.Read(r.From);
        if (r.Classes is { } declared && declared < ds.NumClasses)
            throw new DataFormatException(r.From, $"{ds.NumClasses} class folders but --classes says {declared}");
        NpyDataset.Write(ds, output, r.Unlabeled ? null : labelsOut);
        return new ImportOutcome(
            output,
            r.Unlabeled ? null : labelsOut,
            ds.Count,
            ds.Height,
            ds.Width,
            ds.Channels,
            ds.ClassCounts(),
            $"image folder, classes {string.Join(", ", ds.ClassNames)}"
        );
    }

    private static (int[] Labels, string Source)? LabelsFromFile(ImportRequest r, bool required)
    {
        var path = r.Labels ?? DatasetLoader.FindLabelsFor(r.From);
        if (path is null)
        {
            if (required)
                throw new DataFormatException(
                    r.From,
                    "no labels: pass --labels L.npy (or put them at NAME.labels.npy); for unlabeled images import "
                        + "with --unlabeled and pseudo-label the store with `proxyrobust label`"
                );
            return null;
        }
        return (Npy.ReadLabels(path), path);
    }

    private static ImportOutcome FromNpz(
        ImportRequest r,
        string output,
        string labelsOut,
        IProgress<(long, long)>? progress
    )
    {
        ZipArchive zip;
        try
        {
            zip = ZipFile.OpenRead(r.From);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(r.From, $"not a readable .npz (zip) archive: {e.Message}");
        }
        using (zip)
        {
            ZipArchiveEntry? Entry(string[] keys) =>
                keys.Select(k => zip.GetEntry(k + ".npy")).FirstOrDefault(e => e is not null);
            var images =
                Entry(ImageKeys)
                ?? throw new DataFormatException(
                    r.From,
                    $"no image array: expected one of {string.Join(", ", ImageKeys)} (found "
                        + $"{string.Join(", ", zip.Entries.Select(e => Path.GetFileNameWithoutExtension(e.Name)))})"
                );
            (int[], string)? labels = null;
            if (r.Labels is not null)
                labels = (Npy.ReadLabels(r.Labels), r.Labels);
            else if (Entry(LabelKeys) is { } entry)
            {
                var name = $"{r.From}:{entry.Name}";
                using var s = OpenEntry(entry, r.From);
                labels = (Npy.ReadLabels(s, name, entry.Length), name);
            }
            else if (!r.Unlabeled)
                throw new DataFormatException(
                    r.From,
                    $"no label array ({string.Join(", ", LabelKeys)}): pass --labels, or import with --unlabeled"
                );
            return FromArrays(
                r,
                NpyArray.OpenStream(() => OpenEntry(images, r.From), $"{r.From}:{images.Name}", images.Length),
                labels,
                output,
                labelsOut,
                progress
            );
        }
    }

    private static Stream OpenEntry(ZipArchiveEntry entry, string archive)
    {
        try
        {
            return entry.Open();
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(archive, $"{entry.Name} cannot be read: {e.Message}");
        }
    }

    private static ImportOutcome FromArrays(
        ImportRequest r,
        NpyArray images,
        (int[] Labels, string Source)? labels,
        string output,
        string labelsOut,
        IProgress<(long, long)>? progress
    )
    {
        var (n, h, w, c, layout) = images.ImageShape();
        IReadOnlyList<string>? names = null;
        if (labels is { } l)
        {
            if (l.Labels.Length != n)
                throw new DataFormatException(l.Source, $"{l.Labels.Length} labels for {n} images in {images.Name}");
            names = ClassNames.For(l.Labels, l.Source, null, r.Classes);
        }
        int per = h * w * c;
        var pixels = new byte[per];
        var raw = new byte[per * images.ElementSize];
        AtomicFile.Write(
            output,
            s =>
            {
                Npy.WriteTo(s, "|u1", [n, h, w, c], ReadOnlySpan<byte>.Empty);
                using var input = images.OpenData();
                for (long i = 0; i < n; i++)
                {
                    try
                    {
                        input.ReadExactly(raw);
                    }
                    catch (EndOfStreamException)
                    {
                        throw new DataFormatException(images.Name, $"truncated: ends in image {i} of {n}");
                    }
                    images.ToPixels(raw, pixels, i, layout, h, w, c, r.FloatRange);
                    s.Write(pixels);
                    if (progress is not null && (i + 1) % 4096 == 0)
                        progress.Report((i + 1, n));
                }
            }
        );
        progress?.Report((n, n));
        int[] counts = [];
        if (labels is { } lab)
        {
            Npy.WriteLabels(labelsOut, lab.Labels);
            counts = new int[names!.Count];
            foreach (var label in lab.Labels)
                counts[label]++;
        }
        var conversion =
            $"{images.Descr} {layout}"
            + (images.IsFloat ? $" in {(r.FloatRange == FloatRange.ZeroOne ? "[0, 1]" : "[-1, 1]")}" : "");
        return new ImportOutcome(output, labels is null ? null : labelsOut, n, h, w, c, counts, conversion);
    }
}

/// <summary>An N-d array to import from: a .npy file, an .npy inside an archive, or raw uint8 bytes of known image
/// shape. Reads sequentially (archives cannot seek), one image at a time.</summary>
internal sealed class NpyArray
{
    public required string Name { get; init; }
    public required string Descr { get; init; }
    public required long[] Shape { get; init; }
    private Func<Stream> Open { get; init; } = null!;
    private long DataOffset { get; init; }

    public string Kind => Descr[1..];
    public bool IsFloat => Kind is "f4" or "f8";
    public int ElementSize => int.Parse(Descr[2..], System.Globalization.CultureInfo.InvariantCulture);

    public static NpyArray OpenFile(string path)
    {
        var h = Npy.ReadHeader(path);
        return new NpyArray
        {
            Name = path,
            Descr = h.Descr,
            Shape = h.Shape,
            DataOffset = h.DataOffset,
            Open = () => File.OpenRead(path),
        };
    }

    public static NpyArray OpenStream(Func<Stream> open, string name, long length)
    {
        using var s = open();
        var h = Npy.ReadHeader(s, name, length);
        return new NpyArray
        {
            Name = name,
            Descr = h.Descr,
            Shape = h.Shape,
            DataOffset = h.DataOffset,
            Open = open,
        };
    }

    public static NpyArray RawBytes(string path, (int H, int W, int C) shape)
    {
        long len = new FileInfo(path).Length;
        long per = (long)shape.H * shape.W * shape.C;
        if (len == 0 || len % per != 0)
            throw new DataFormatException(
                path,
                $"size {len} bytes is not a positive multiple of {per} bytes per {shape.H}x{shape.W}x{shape.C} image"
            );
        return new NpyArray
        {
            Name = path,
            Descr = "|u1",
            Shape = [len / per, shape.H, shape.W, shape.C],
            DataOffset = 0,
            Open = () => File.OpenRead(path),
        };
    }

    /// <summary>The data, positioned at the first element.</summary>
    public Stream OpenData()
    {
        var s = Open();
        if (s.CanSeek)
            s.Position = DataOffset;
        else
        {
            // an archive entry: skip the header by reading it
            var skip = new byte[DataOffset];
            s.ReadExactly(skip);
        }
        return s;
    }

    /// <summary>Count, height, width, channels and layout ("NHWC", "NCHW" or "NHW"), rejecting other dtypes and
    /// shapes.</summary>
    public (long N, int H, int W, int C, string Layout) ImageShape()
    {
        if (Kind is not ("u1" or "f4" or "f8"))
            throw new DataFormatException(Name, $"images must be uint8, float32 or float64 (dtype '{Descr}' found)");
        var s = Shape;
        string shape = $"({string.Join(", ", s)})";
        if (s.Length == 3)
            return (s[0], (int)s[1], (int)s[2], 1, "NHW");
        if (s.Length != 4)
            throw new DataFormatException(Name, $"images must be N x H x W x C or N x C x H x W, found shape {shape}");
        if (s[3] is 1 or 3)
            return (s[0], (int)s[1], (int)s[2], (int)s[3], "NHWC");
        if (s[1] is 1 or 3)
            return (s[0], (int)s[2], (int)s[3], (int)s[1], "NCHW");
        throw new DataFormatException(Name, $"shape {shape} has no channel dimension of 1 or 3 (first or last)");
    }

    /// <summary>One image's elements to uint8 HWC pixels; floats must be finite and inside their range.</summary>
    public void ToPixels(byte[] raw, byte[] pixels, long index, string layout, int h, int w, int c, FloatRange range)
    {
        int per = h * w * c;
        for (int e = 0; e < per; e++)
        {
            // element e of the source order; its HWC position
            int target = layout == "NCHW" ? (e % (h * w)) * c + e / (h * w) : e;
            if (Kind == "u1")
            {
                pixels[target] = raw[e];
                continue;
            }
            double v =
                Kind == "f4"
                    ? BinaryPrimitives.ReadSingleLittleEndian(raw.AsSpan(4 * e))
                    : BinaryPrimitives.ReadDoubleLittleEndian(raw.AsSpan(8 * e));
            if (range == FloatRange.MinusOneOne)
                v = (v + 1) / 2;
            if (!(v >= -1e-6 && v <= 1 + 1e-6))
                throw new DataFormatException(
                    Name,
                    $"image {index}, element {e} is {(range == FloatRange.MinusOneOne ? 2 * v - 1 : v)}: float images "
                        + "must be finite and in "
                        + (range == FloatRange.ZeroOne ? "[0, 1] (or say --float-range -1,1)" : "[-1, 1]")
                );
            pixels[target] = (byte)Math.Round(Math.Clamp(v, 0, 1) * 255);
        }
    }
}
