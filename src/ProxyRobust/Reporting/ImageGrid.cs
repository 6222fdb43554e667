using ProxyRobust.Core;
using SkiaSharp;

namespace ProxyRobust.Reporting;

/// <summary>Writes a PNG grid of images (uint8, H x W x C, C = 1 or 3): one row per entry of <c>rows</c>, scaled up for
/// viewing.</summary>
public static class ImageGrid
{
    public static void WritePng(
        IReadOnlyList<IReadOnlyList<byte[]>> rows,
        int height,
        int width,
        int channels,
        string path,
        int scale = 2
    )
    {
        int cols = rows.Count == 0 ? 0 : rows.Max(r => r.Count),
            h = height,
            w = width,
            gap = 2;
        using var bmp = new SKBitmap(
            cols * (w * scale + gap) + gap,
            rows.Count * (h * scale + gap) + gap,
            SKColorType.Rgba8888,
            SKAlphaType.Opaque
        );
        bmp.Erase(new SKColor(40, 40, 40));
        for (int r = 0; r < rows.Count; r++)
        {
            for (int col = 0; col < rows[r].Count; col++)
            {
                var img = rows[r][col];
                int ox = gap + col * (w * scale + gap),
                    oy = gap + r * (h * scale + gap);
                for (int y = 0; y < h * scale; y++)
                {
                    for (int x = 0; x < w * scale; x++)
                    {
                        int p = ((y / scale) * w + x / scale) * channels;
                        var colour =
                            channels == 1
                                ? new SKColor(img[p], img[p], img[p])
                                : new SKColor(img[p], img[p + 1], img[p + 2]);
                        bmp.SetPixel(ox + x, oy + y, colour);
                    }
                }
            }
        }
        using var image = SKImage.FromBitmap(bmp);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.WriteAllBytes(path, png.AsSpan());
    }
}
