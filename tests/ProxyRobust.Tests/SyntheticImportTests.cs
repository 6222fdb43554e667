using System.IO.Compression;
using System.Runtime.InteropServices;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Generative;
using SkiaSharp;
using Xunit;

namespace ProxyRobust.Tests;

public sealed class SyntheticImportTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("proxyrobust-import-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string P(string name) => Path.Combine(dir, name);

    private static byte[] Floats(float[] v) => MemoryMarshal.AsBytes(v.AsSpan()).ToArray();

    private static byte[] Store(string path)
    {
        var h = Npy.ReadHeader(path);
        Assert.Equal("|u1", h.Descr);
        return File.ReadAllBytes(path)[(int)h.DataOffset..];
    }

    [Fact]
    public void Float_nchw_images_in_minus_one_one_become_the_same_pixels_in_nhwc()
    {
        // 2 images, 3 channels, 2x2: element (n, c, y, x) = -1 + 2 * code / 255 for a distinct byte code per element
        int n = 2,
            c = 3,
            h = 2,
            w = 2;
        var codes = new byte[n * c * h * w];
        var values = new float[codes.Length];
        for (int i = 0; i < codes.Length; i++)
        {
            codes[i] = (byte)(i * 10 + 5);
            values[i] = -1 + 2 * codes[i] / 255f;
        }
        Npy.Write(P("x.npy"), "<f4", [n, c, h, w], Floats(values));
        Npy.WriteLabels(P("x.labels.npy"), [1, 0]);
        var o = SyntheticImport.Execute(new ImportRequest(P("x.npy"), P("store"), FloatRange: FloatRange.MinusOneOne));
        Assert.Equal((2L, 2, 2, 3), (o.Images, o.Height, o.Width, o.Channels));
        var expected = new byte[codes.Length];
        for (int img = 0; img < n; img++)
        {
            for (int ch = 0; ch < c; ch++)
            {
                for (int p = 0; p < h * w; p++)
                    expected[img * c * h * w + p * c + ch] = codes[img * c * h * w + ch * h * w + p];
            }
        }
        Assert.Equal(expected, Store(P("store.npy")));
        Assert.Equal(new[] { 1, 0 }, Npy.ReadLabels(P("store.labels.npy")));
        using var ds = DatasetLoader.Load(P("store.npy"), Split.Train);
        Assert.Equal(2, ds.NumClasses);
    }

    private void WriteNpz(string path, byte[] images, long[] shape, int[]? labels, CompressionLevel level)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        void Add(string name, string descr, long[] s, byte[] data)
        {
            using var e = zip.CreateEntry(name, level).Open();
            Npy.WriteTo(e, descr, s, data);
        }
        Add("image.npy", "|u1", shape, images);
        if (labels is not null)
            Add("label.npy", "<i8", [labels.Length], labels.SelectMany(l => BitConverter.GetBytes((long)l)).ToArray());
    }

    [Theory]
    [InlineData(CompressionLevel.NoCompression)] // np.savez
    [InlineData(CompressionLevel.Optimal)] // np.savez_compressed
    public void Npz_with_image_and_label_arrays_imports_byte_for_byte(CompressionLevel level)
    {
        var (images, labels) = TestSupport.RandomImages(30, 4, 5, 1, 3, seed: 2);
        WriteNpz(P("s.npz"), images, [30, 4, 5, 1], labels, level);
        var o = SyntheticImport.Execute(new ImportRequest(P("s.npz"), P("out.npy")));
        Assert.Equal(images, Store(P("out.npy")));
        Assert.Equal(labels, Npy.ReadLabels(P("out.labels.npy")));
        Assert.Equal(new[] { 10, 10, 10 }, o.ClassCounts);
    }

    [Fact]
    public void Raw_bin_with_labels_and_an_image_folder_import()
    {
        var (images, labels) = TestSupport.RandomImages(12, 2, 2, 3, 4, seed: 3);
        File.WriteAllBytes(P("raw.bin"), images);
        Npy.WriteLabels(P("raw_labels.npy"), labels);
        var o = SyntheticImport.Execute(new ImportRequest(P("raw.bin"), P("fromraw"), RawShape: (2, 2, 3)));
        Assert.Equal(12, o.Images);
        Assert.Equal(images, Store(P("fromraw.npy")));

        // two classes of two gray 3x2 PNGs: pixel value = 40 * class + 10 * image
        for (int c = 0; c < 2; c++)
        {
            Directory.CreateDirectory(P($"folder/class{c}"));
            for (int i = 0; i < 2; i++)
            {
                using var bmp = new SKBitmap(3, 2, SKColorType.Gray8, SKAlphaType.Opaque);
                bmp.Erase(new SKColor((byte)(40 * c + 10 * i), (byte)(40 * c + 10 * i), (byte)(40 * c + 10 * i)));
                using var png = bmp.Encode(SKEncodedImageFormat.Png, 100);
                File.WriteAllBytes(P($"folder/class{c}/{i}.png"), png.ToArray());
            }
        }
        var f = SyntheticImport.Execute(new ImportRequest(P("folder"), P("fromfolder.npy")));
        Assert.Equal((4L, 2, 3, 1), (f.Images, f.Height, f.Width, f.Channels));
        var pixels = Store(P("fromfolder.npy"));
        Assert.Equal(new byte[] { 0, 10, 40, 50 }, Enumerable.Range(0, 4).Select(i => pixels[i * 6]).ToArray());
        Assert.Equal(new[] { 0, 0, 1, 1 }, Npy.ReadLabels(P("fromfolder.labels.npy")));
    }

    public static TheoryData<string, string> BadInputs() =>
        new()
        {
            { "truncated", "truncated" },
            { "int16", "dtype '<i2'" },
            { "two-channel", "no channel dimension" },
            { "label-out-of-range", "outside 0..2" },
            { "label-count", "3 labels for 4 images" },
            { "label-gap", "have no image" },
            { "nan", "is NaN" },
            { "out-of-range-float", "is 1.5" },
            { "npz-without-images", "no image array" },
            { "npz-without-labels", "no label array" },
            { "corrupt-zip", "not a readable .npz" },
            { "bin-size", "not a positive multiple of 12" },
            { "no-labels", "no labels" },
        };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void Bad_imports_fail_with_one_error_naming_the_file_and_write_nothing(string kind, string message)
    {
        // an earlier store at the output path must survive a failed import untouched
        var previous = new byte[] { 1, 2, 3 };
        File.WriteAllBytes(P("store.npy"), previous);
        var (images, _) = TestSupport.RandomImages(4, 2, 2, 1, 2, seed: 1);
        string from = P(kind + ".npy");
        int? classes = null;
        void Labels(string images, params int[] l) =>
            Npy.WriteLabels(Path.ChangeExtension(images, null) + ".labels.npy", l);
        switch (kind)
        {
            case "truncated":
                Npy.Write(from, "|u1", [4, 2, 2, 1], images[..10]);
                Labels(from, 0, 1, 0, 1);
                break;
            case "int16":
                Npy.Write(from, "<i2", [4, 2, 2, 1], new byte[32]);
                Labels(from, 0, 1, 0, 1);
                break;
            case "two-channel":
                Npy.Write(from, "|u1", [2, 2, 2, 2], images);
                Labels(from, 0, 1);
                break;
            case "label-out-of-range":
                Npy.Write(from, "|u1", [4, 2, 2, 1], images);
                Labels(from, 0, 1, 3, 1);
                classes = 3;
                break;
            case "label-count":
                Npy.Write(from, "|u1", [4, 2, 2, 1], images);
                Labels(from, 0, 1, 0);
                break;
            case "label-gap":
                Npy.Write(from, "|u1", [4, 2, 2, 1], images);
                Labels(from, 0, 2, 0, 2);
                break;
            case "nan":
            case "out-of-range-float":
                var v = Enumerable.Repeat(0.5f, 16).ToArray();
                v[13] = kind == "nan" ? float.NaN : 1.5f;
                Npy.Write(from, "<f4", [4, 2, 2, 1], Floats(v));
                Labels(from, 0, 1, 0, 1);
                break;
            case "npz-without-images":
                from = P(kind + ".npz");
                using (var zip = ZipFile.Open(from, ZipArchiveMode.Create))
                using (var e = zip.CreateEntry("pixels.npy").Open())
                    Npy.WriteTo(e, "|u1", [4, 2, 2, 1], images);
                break;
            case "npz-without-labels":
                from = P(kind + ".npz");
                WriteNpz(from, images, [4, 2, 2, 1], null, CompressionLevel.Optimal);
                break;
            case "corrupt-zip":
                from = P(kind + ".npz");
                WriteNpz(from, images, [4, 2, 2, 1], [0, 1, 0, 1], CompressionLevel.Optimal);
                var bytes = File.ReadAllBytes(from);
                File.WriteAllBytes(from, bytes[..(bytes.Length / 2)]);
                break;
            case "bin-size":
                from = P(kind + ".bin");
                File.WriteAllBytes(from, new byte[30]);
                break;
            case "no-labels":
                Npy.Write(from, "|u1", [4, 2, 2, 1], images);
                break;
        }
        var e2 = Assert.Throws<DataFormatException>(() =>
            SyntheticImport.Execute(new ImportRequest(from, P("store.npy"), RawShape: (2, 2, 3), Classes: classes))
        );
        Assert.Contains(message, e2.Message);
        Assert.Contains(Path.GetFileNameWithoutExtension(from), e2.Message);
        Assert.Equal(previous, File.ReadAllBytes(P("store.npy")));
        Assert.False(File.Exists(P("store.labels.npy")));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp*"));
    }

    [Fact]
    public void The_cli_exits_1_with_one_line_for_a_bad_import()
    {
        Npy.Write(P("bad.npy"), "<i2", [4, 2, 2, 1], new byte[32]);
        var (code, _, err) = TestSupport.RunCli("synthetic", "import", "--from", P("bad.npy"), "--out", P("s.npy"));
        Assert.Equal(1, code);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("bad.npy", lines[0]);
        Assert.False(File.Exists(P("s.npy")));
    }
}
