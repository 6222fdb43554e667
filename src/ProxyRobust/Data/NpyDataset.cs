using ProxyRobust.Core;

namespace ProxyRobust.Data;

/// <summary>
/// Images as a uint8 .npy of shape N x H x W x C (or N x H x W for one channel), memory-mapped, with an int64
/// label .npy; also the raw .bin layout of the paper's released CIFAR-10 samples (3072 bytes per 32x32x3 HWC image).
/// </summary>
public static class NpyDataset
{
    public static ImageDataset Read(
        string imagesPath,
        string labelsPath,
        IReadOnlyList<string>? classNames = null,
        (int H, int W, int C)? rawShape = null,
        int? classes = null
    )
    {
        var labels = Npy.ReadLabels(labelsPath);
        var (store, h, w, c) = OpenImages(imagesPath, rawShape);
        try
        {
            if (store.Count != labels.Length)
                throw new DataFormatException(
                    imagesPath,
                    $"{store.Count} images but {labelsPath} holds {labels.Length} labels"
                );
            classNames = ClassNames.For(labels, labelsPath, classNames, classes);
            return new ImageDataset(imagesPath, store, labels, h, w, c, classNames);
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>Images without labels (e.g. generator samples to pseudo-label): every label is 0 of one class
    /// "unlabeled".</summary>
    public static ImageDataset ReadUnlabeled(string imagesPath, (int H, int W, int C)? rawShape = null)
    {
        var (store, h, w, c) = OpenImages(imagesPath, rawShape);
        return new ImageDataset(imagesPath, store, new int[store.Count], h, w, c, ["unlabeled"]);
    }

    /// <summary>Memory-maps a uint8 NHWC (or NHW) .npy, or a raw .bin of <paramref name="rawShape"/> images (default
    /// 32x32x3).</summary>
    public static (IImageStore Store, int H, int W, int C) OpenImages(
        string imagesPath,
        (int H, int W, int C)? rawShape = null
    )
    {
        int h,
            w,
            c;
        long count,
            offset;
        if (Path.GetExtension(imagesPath).Equals(".npy", StringComparison.OrdinalIgnoreCase))
        {
            var header = Npy.ReadHeader(imagesPath);
            if (Npy.Kind(header) != "u1")
                throw new DataFormatException(imagesPath, $"images must be uint8 (dtype '{header.Descr}' found)");
            var s = header.Shape;
            if (s.Length == 3)
                (h, w, c) = ((int)s[1], (int)s[2], 1);
            else if (s.Length == 4)
                (h, w, c) = ((int)s[1], (int)s[2], (int)s[3]);
            else
                throw new DataFormatException(
                    imagesPath,
                    $"images must have shape N x H x W x C, found ({string.Join(", ", s)})"
                );
            if (c is not (1 or 3))
                throw new DataFormatException(
                    imagesPath,
                    $"last dimension {c} is not a channel count of 1 or 3 (images must be NHWC)"
                );
            (count, offset) = (s[0], header.DataOffset);
        }
        else
        {
            (h, w, c) = rawShape ?? (32, 32, 3);
            if (!File.Exists(imagesPath))
                throw new DataFormatException(imagesPath, "file not found");
            long len = new FileInfo(imagesPath).Length;
            int per = h * w * c;
            if (len % per != 0)
                throw new DataFormatException(
                    imagesPath,
                    $"size {len} bytes is not a multiple of {per} bytes per {h}x{w}x{c} image"
                );
            (count, offset) = (len / per, 0);
        }
        IImageStore store =
            count == 0
                ? new ArrayImageStore([], h * w * c)
                : new MappedImageStore(imagesPath, offset, count, h * w * c);
        return (store, h, w, c);
    }

    /// <summary>Writes a data set as images .npy (uint8 NHWC) + labels .npy (int64), or the images alone.</summary>
    public static void Write(ImageDataset data, string imagesPath, string? labelsPath)
    {
        var shape = new long[] { data.Count, data.Height, data.Width, data.Channels };
        AtomicFile.Write(
            imagesPath,
            s =>
            {
                // header with the data streamed image by image: no copy of the whole set in memory
                Npy.WriteTo(s, "|u1", shape, ReadOnlySpan<byte>.Empty);
                for (int i = 0; i < data.Count; i++)
                    s.Write(data.Image(i));
            }
        );
        if (labelsPath is not null)
            Npy.WriteLabels(labelsPath, data.Labels);
    }
}
