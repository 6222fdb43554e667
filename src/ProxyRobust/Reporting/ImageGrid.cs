using ProxyRobust.Data;
using SkiaSharp;

namespace ProxyRobust.Reporting;

/// <summary>Writes a PNG grid of sample images: one row per class, <c>perClass</c> images each, scaled up for viewing.</summary>
public static class ImageGrid
{
    public static void WritePng(ImageDataset data, string path, int perClass = 10, int scale = 2, int seed = 0)
    {
        int rows = data.NumClasses, cols = perClass, h = data.Height, w = data.Width, gap = 2;
        var byClass = Enumerable.Range(0, data.Count).GroupBy(i => data.Labels[i]).ToDictionary(g => g.Key, g => g.ToArray());
        var rng = new Random(seed);
        using var bmp = new SKBitmap(cols * (w * scale + gap) + gap, rows * (h * scale + gap) + gap, SKColorType.Rgba8888, SKAlphaType.Opaque);
        bmp.Erase(new SKColor(40, 40, 40));
        for (int r = 0; r < rows; r++)
        {
            if (!byClass.TryGetValue(r, out var members)) continue;
            for (int col = 0; col < Math.Min(cols, members.Length); col++)
            {
                var img = data.Image(members[rng.Next(members.Length)]);
                int ox = gap + col * (w * scale + gap), oy = gap + r * (h * scale + gap);
                for (int y = 0; y < h * scale; y++)
                for (int x = 0; x < w * scale; x++)
                {
                    int p = ((y / scale) * w + x / scale) * data.Channels;
                    var colour = data.Channels == 1 ? new SKColor(img[p], img[p], img[p]) : new SKColor(img[p], img[p + 1], img[p + 2]);
                    bmp.SetPixel(ox + x, oy + y, colour);
                }
            }
        }
        using var image = SKImage.FromBitmap(bmp);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.WriteAllBytes(path, png.AsSpan());
    }
}
