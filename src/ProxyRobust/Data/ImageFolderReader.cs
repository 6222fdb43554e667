using ProxyRobust.Core;
using SkiaSharp;

namespace ProxyRobust.Data;

/// <summary>ImageFolder layout: ROOT/CLASS_NAME/*.png|jpg|jpeg; classes sorted by name; all images the same
/// size.</summary>
public static class ImageFolderReader
{
    private static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    public static ImageDataset Read(string root)
    {
        if (!Directory.Exists(root))
            throw new DataFormatException(root, "folder not found");
        var classDirs = Directory.GetDirectories(root).OrderBy(d => d, StringComparer.Ordinal).ToArray();
        if (classDirs.Length == 0)
            throw new DataFormatException(
                root,
                "empty folder: an image folder needs one sub-folder of images per class"
            );
        var files = new List<(string Path, int Label)>();
        for (int c = 0; c < classDirs.Length; c++)
            files.AddRange(
                Directory
                    .EnumerateFiles(classDirs[c])
                    .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                    .OrderBy(f => f, StringComparer.Ordinal)
                    .Select(f => (f, c))
            );
        if (files.Count == 0)
            throw new DataFormatException(root, "no PNG or JPEG images in any class sub-folder");

        // First pass: sizes and whether every image is grayscale.
        int h = -1,
            w = -1;
        bool allGray = true;
        foreach (var (path, _) in files)
        {
            using var codec =
                SKCodec.Create(path)
                ?? throw new DataFormatException(path, "not a readable PNG or JPEG image (corrupt or truncated?)");
            var info = codec.Info;
            if (h < 0)
                (h, w) = (info.Height, info.Width);
            else if (info.Height != h || info.Width != w)
                throw new DataFormatException(
                    path,
                    $"image is {info.Width}x{info.Height} but earlier images are {w}x{h}; all images must have one size"
                );
            allGray &= info.ColorType == SKColorType.Gray8;
        }
        int ch = allGray ? 1 : 3,
            per = h * w * ch;
        var data = new byte[checked((long)files.Count * per)];
        var labels = new int[files.Count];
        for (int n = 0; n < files.Count; n++)
        {
            var (path, label) = files[n];
            labels[n] = label;
            using var bmp =
                SKBitmap.Decode(path, new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul))
                ?? throw new DataFormatException(path, "image could not be decoded (corrupt or truncated?)");
            var px = bmp.GetPixelSpan();
            var dst = data.AsSpan(n * per, per);
            for (int p = 0; p < h * w; p++)
            {
                if (ch == 1)
                    dst[p] = px[4 * p];
                else
                {
                    dst[3 * p] = px[4 * p];
                    dst[3 * p + 1] = px[4 * p + 1];
                    dst[3 * p + 2] = px[4 * p + 2];
                }
            }
        }
        var names = classDirs.Select(Path.GetFileName).Select(n => n!).ToArray();
        return new ImageDataset(root, new ArrayImageStore(data, per), labels, h, w, ch, names);
    }
}
