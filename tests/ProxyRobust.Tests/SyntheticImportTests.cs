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

public sealed class OnnxGeneratorTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("proxyrobust-onnx-gen-").FullName;

    public OnnxGeneratorTests() => TestSupport.InitTorch();

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>images = reshape(tanh(E[y] + z W), N x 1 x 4 x 4): a 3-class generator with a 4-d latent.</summary>
    private string Model(string name, float latentWeight, bool singleInput = false)
    {
        var g = new ProxyRobust.Export.OnnxGraph();
        var e = g.Initializer(
            "E",
            [3, 16],
            Enumerable.Range(0, 48).Select(i => (i / 16 - 1) * 0.6f + (i % 16) * 0.03f).ToArray()
        );
        var w = g.Initializer("W", [4, 16], Enumerable.Range(0, 64).Select(i => latentWeight * MathF.Sin(i)).ToArray());
        var shape = g.Int64Initializer("shape", [4], [-1, 1, 4, 4]);
        g.Input("z", [null, 4]);
        string sum;
        if (singleInput)
            sum = g.Node("MatMul", ["z", w]);
        else
        {
            g.Input("y", [null], int64: true);
            sum = g.Node("Add", [g.Node("Gather", [e, "y"], null, ("axis", 0)), g.Node("MatMul", ["z", w])]);
        }
        g.Node("Reshape", [g.Node("Tanh", [sum]), shape], "images");
        g.Output("images", [null, 1, 4, 4]);
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, g.ToModel("generator"));
        return path;
    }

    private Experiments.GeneratorSampleOutcome Sample(string model, string store, int shard = 0, int shards = 1) =>
        Experiments.GeneratorSampleRun.Execute(
            new Experiments.GeneratorSampleRequest
            {
                Checkpoint = model,
                Output = Path.Combine(dir, store),
                Count = 7,
                ChunkSize = 3,
                BatchSize = 2,
                OnnxClasses = 3,
                ShardIndex = shard,
                ShardCount = shards,
            }
        );

    [Fact]
    public void A_generator_that_ignores_its_latent_gives_the_pixels_of_its_formula_per_label()
    {
        Sample(Model("g.onnx", 0), "s.npy");
        var h = Npy.ReadHeader(Path.Combine(dir, "s.npy"));
        Assert.Equal(new long[] { 7, 4, 4, 1 }, h.Shape);
        var pixels = File.ReadAllBytes(Path.Combine(dir, "s.npy"))[(int)h.DataOffset..];
        var labels = Npy.ReadLabels(Path.Combine(dir, "s.labels.npy"));
        Assert.Equal(Enumerable.Range(0, 7).Select(i => i % 3), labels);
        for (int i = 0; i < 7; i++)
        {
            for (int p = 0; p < 16; p++)
            {
                double e = (labels[i] - 1) * 0.6 + p * 0.03;
                Assert.Equal((byte)Math.Round((Math.Tanh(e) + 1) / 2 * 255), pixels[i * 16 + p]);
            }
        }
    }

    [Fact]
    public void Latents_vary_the_images_and_two_shards_make_the_single_process_store()
    {
        var model = Model("g.onnx", 0.5f);
        Sample(model, "one.npy");
        Sample(model, "two.npy", 0, 2);
        var second = Sample(model, "two.npy", 1, 2);
        Assert.True(second.Complete);
        var one = File.ReadAllBytes(Path.Combine(dir, "one.npy"));
        Assert.Equal(one, File.ReadAllBytes(Path.Combine(dir, "two.npy")));
        // images 0 and 3 share label 0 but not their latent
        int offset = (int)Npy.ReadHeader(Path.Combine(dir, "one.npy")).DataOffset;
        Assert.NotEqual(one.AsSpan(offset, 16).ToArray(), one.AsSpan(offset + 3 * 16, 16).ToArray());
    }

    [Fact]
    public void Unusable_onnx_files_fail_with_one_error_naming_the_file()
    {
        var garbage = Path.Combine(dir, "garbage.onnx");
        File.WriteAllBytes(garbage, [1, 2, 3, 4, 5]);
        var e1 = Assert.Throws<DataFormatException>(() => Sample(garbage, "a.npy"));
        Assert.Contains("not a loadable ONNX model", e1.Message);
        var e2 = Assert.Throws<DataFormatException>(() =>
            Sample(Model("unconditional.onnx", 1, singleInput: true), "b.npy")
        );
        Assert.Contains("unconditional.onnx", e2.Message);
        Assert.Contains("label", e2.Message);
        Assert.False(File.Exists(Path.Combine(dir, "a.npy")));
    }
}
