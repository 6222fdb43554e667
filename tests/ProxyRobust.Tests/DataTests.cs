using System.Buffers.Binary;
using System.IO.Compression;
using ProxyRobust.Core;
using ProxyRobust.Data;
using SkiaSharp;

namespace ProxyRobust.Tests;

public sealed class DataTests
{
    private static byte[] Idx(byte[] data, params int[] dims)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        bytes[2] = 0x08;
        bytes[3] = (byte)dims.Length;
        for (int d = 0; d < dims.Length; d++)
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * d), dims[d]);
        data.CopyTo(bytes, 4 + 4 * dims.Length);
        return bytes;
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(raw);
        return ms.ToArray();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Idx_reads_plain_and_gzip_with_pixels_in_place(bool gzip)
    {
        using var tmp = new TempDir();
        var (images, labels) = TestSupport.RandomImages(5, 4, 3, 1, 10, seed: 1);
        var img = Idx(images, 5, 4, 3);
        var lbl = Idx(labels.Select(l => (byte)l).ToArray(), 5);
        File.WriteAllBytes(tmp.File("train-images-idx3-ubyte" + (gzip ? ".gz" : "")), gzip ? Gzip(img) : img);
        File.WriteAllBytes(tmp.File("train-labels-idx1-ubyte" + (gzip ? ".gz" : "")), gzip ? Gzip(lbl) : lbl);
        using var ds = DatasetLoader.Load(tmp.Path, Split.Train);
        Assert.Equal((5, 4, 3, 1), (ds.Count, ds.Height, ds.Width, ds.Channels));
        Assert.Equal(labels, ds.Labels);
        Assert.Equal(images.AsSpan(2 * 12, 12).ToArray(), ds.Image(2).ToArray());
    }

    [Fact]
    public void Truncated_idx_names_the_file_and_the_shortfall()
    {
        using var tmp = new TempDir();
        var img = Idx(new byte[5 * 4 * 4], 5, 4, 4);
        File.WriteAllBytes(tmp.File("train-images-idx3-ubyte"), img[..^7]);
        File.WriteAllBytes(tmp.File("train-labels-idx1-ubyte"), Idx(new byte[5], 5));
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.Path, Split.Train));
        Assert.Equal(tmp.File("train-images-idx3-ubyte"), e.FilePath);
        Assert.Contains("truncated", e.Message);
        // a truncated gzip stream too
        File.WriteAllBytes(tmp.File("train-images-idx3-ubyte"), Gzip(img)[..20]);
        var g = Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.Path, Split.Train));
        Assert.Equal(tmp.File("train-images-idx3-ubyte"), g.FilePath);
    }

    [Fact]
    public void Cifar_batches_round_trip_from_planar_to_hwc()
    {
        using var tmp = new TempDir();
        var (images, labels) = TestSupport.RandomImages(7, 32, 32, 3, 10, seed: 2);
        CifarReader.Write(tmp.File("data_batch_1.bin"), images, labels);
        // Independent check of the planar layout: byte 1 + 1024 of record 0 is the green value of pixel (0,0).
        var raw = File.ReadAllBytes(tmp.File("data_batch_1.bin"));
        Assert.Equal(images[1], raw[1 + 1024]);
        Assert.Equal(labels[3], raw[3 * 3073]);
        using var ds = DatasetLoader.Load(tmp.Path, Split.Train);
        Assert.Equal((7, 32, 32, 3), (ds.Count, ds.Height, ds.Width, ds.Channels));
        Assert.Equal(labels, ds.Labels);
        Assert.Equal(images.AsSpan(6 * 3072, 3072).ToArray(), ds.Image(6).ToArray());
        Assert.Equal("airplane", ds.ClassNames[0]);
    }

    [Fact]
    public void Cifar_file_whose_size_is_not_a_multiple_of_the_record_is_rejected()
    {
        using var tmp = new TempDir();
        var (images, labels) = TestSupport.RandomImages(2, 32, 32, 3, 10, seed: 3);
        CifarReader.Write(tmp.File("data_batch_1.bin"), images, labels);
        var raw = File.ReadAllBytes(tmp.File("data_batch_1.bin"));
        File.WriteAllBytes(tmp.File("data_batch_1.bin"), raw[..^100]);
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.Path, Split.Train));
        Assert.Contains("not a multiple", e.Message);
        Assert.Equal(tmp.File("data_batch_1.bin"), e.FilePath);
    }

    [Fact]
    public void Npy_images_are_memory_mapped_and_bad_npy_files_are_rejected()
    {
        using var tmp = new TempDir();
        var (images, labels) = TestSupport.RandomImages(6, 8, 8, 3, 4, seed: 4);
        Npy.Write(tmp.File("x.npy"), "|u1", [6, 8, 8, 3], images);
        Npy.WriteLabels(tmp.File("x.labels.npy"), labels);
        using (var ds = DatasetLoader.Load(tmp.File("x.npy"), Split.Train))
        {
            Assert.Equal(labels, ds.Labels);
            Assert.Equal(images.AsSpan(5 * 192, 192).ToArray(), ds.Image(5).ToArray());
        }
        // wrong dtype
        Npy.Write(tmp.File("f.npy"), "<f4", [6, 8, 8, 3], new byte[6 * 192 * 4]);
        Npy.WriteLabels(tmp.File("f.labels.npy"), labels);
        Assert.Contains(
            "uint8",
            Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("f.npy"), Split.Train)).Message
        );
        // wrong shape (channels first)
        Npy.Write(tmp.File("s.npy"), "|u1", [6, 3, 8, 8], images);
        Npy.WriteLabels(tmp.File("s.labels.npy"), labels);
        Assert.Contains(
            "NHWC",
            Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("s.npy"), Split.Train)).Message
        );
        // float labels
        Npy.Write(tmp.File("y.npy"), "|u1", [6, 8, 8, 3], images);
        Npy.Write(tmp.File("y.labels.npy"), "<f8", [6], new byte[48]);
        var fl = Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("y.npy"), Split.Train));
        Assert.Equal(tmp.File("y.labels.npy"), fl.FilePath);
        // count mismatch
        Npy.WriteLabels(tmp.File("y.labels.npy"), labels[..5]);
        Assert.Contains(
            "5 labels",
            Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("y.npy"), Split.Train)).Message
        );
        // truncated data
        File.WriteAllBytes(tmp.File("t.npy"), File.ReadAllBytes(tmp.File("x.npy"))[..^10]);
        Npy.WriteLabels(tmp.File("t.labels.npy"), labels);
        Assert.Contains(
            "truncated",
            Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("t.npy"), Split.Train)).Message
        );
    }

    [Fact]
    public void Labels_out_of_range_are_rejected_with_their_index()
    {
        using var tmp = new TempDir();
        var (images, labels) = TestSupport.RandomImages(3, 4, 4, 1, 3, seed: 5);
        File.WriteAllBytes(tmp.File("train-images-idx3-ubyte"), Idx(images, 3, 4, 4));
        File.WriteAllBytes(tmp.File("train-labels-idx1-ubyte"), Idx([0, 1, 200], 3));
        var e = Assert.Throws<DataFormatException>(() =>
            IdxReader.Read(
                tmp.File("train-images-idx3-ubyte"),
                tmp.File("train-labels-idx1-ubyte"),
                Enumerable.Range(0, 10).Select(i => i.ToString()).ToArray()
            )
        );
        Assert.Contains("200", e.Message);
        Assert.Equal(tmp.File("train-labels-idx1-ubyte"), e.FilePath);
        Npy.Write(tmp.File("x.npy"), "|u1", [3, 4, 4], images);
        Npy.WriteLabels(tmp.File("x.labels.npy"), [0, -1, 2]);
        Assert.Contains(
            "negative",
            Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("x.npy"), Split.Train)).Message
        );
    }

    [Fact]
    public void Image_folder_reads_classes_in_name_order_and_rejects_an_empty_folder()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(tmp.File("empty"));
        Assert.Contains(
            "empty",
            Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("empty"), Split.Train)).Message
        );
        foreach (var (cls, colour) in new[] { ("b_red", SKColors.Red), ("a_blue", SKColors.Blue) })
        {
            Directory.CreateDirectory(tmp.File($"imgs/{cls}"));
            using var bmp = new SKBitmap(5, 4);
            bmp.Erase(colour);
            using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(tmp.File($"imgs/{cls}/0.png"), data.ToArray());
        }
        using var ds = DatasetLoader.Load(tmp.File("imgs"), Split.Train);
        Assert.Equal(["a_blue", "b_red"], ds.ClassNames);
        Assert.Equal((2, 4, 5, 3), (ds.Count, ds.Height, ds.Width, ds.Channels));
        Assert.Equal([0, 0, 255], ds.Image(0)[..3].ToArray());
        Assert.Equal([255, 0, 0], ds.Image(1)[..3].ToArray());
        File.WriteAllBytes(tmp.File("imgs/a_blue/broken.png"), [0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("imgs"), Split.Train));
        Assert.Equal(tmp.File("imgs/a_blue/broken.png"), e.FilePath);
    }

    [Fact]
    public void Missing_file_is_named()
    {
        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load("/nonexistent/data.npy", Split.Train));
        Assert.Equal("/nonexistent/data.npy", e.FilePath);
    }

    [Fact]
    public void Sampler_visits_every_image_once_per_epoch_and_is_reproducible()
    {
        var (images, labels) = TestSupport.RandomImages(103, 4, 4, 1, 10, seed: 6);
        using var ds = new ImageDataset(
            "mem",
            new ArrayImageStore(images, 16),
            labels,
            4,
            4,
            1,
            Enumerable.Range(0, 10).Select(i => $"{i}").ToArray()
        );
        var sampler = new BatchSampler(ds, 10, shuffle: true, AugmentOptions.None, seed: 7);
        Assert.Equal(11, sampler.BatchesPerEpoch);
        var seen = new List<float>();
        foreach (var b in sampler.Epoch(3))
        {
            for (int i = 0; i < b.Count; i++)
                seen.Add(b.Images[i * 16] * 255f);
        }
        // The first pixel identifies images here only up to collisions; compare as multisets.
        var expected = Enumerable.Range(0, 103).Select(i => (float)images[i * 16]).OrderBy(v => v);
        Assert.Equal(expected.ToArray(), seen.Select(v => MathF.Round(v)).OrderBy(v => v).ToArray());
        Assert.Equal(sampler.Order(3), new BatchSampler(ds, 10, true, AugmentOptions.None, 7).Order(3));
        Assert.NotEqual(sampler.Order(3), sampler.Order(4));
        // starting mid-epoch yields exactly the remaining batches
        var tail = sampler.Epoch(3, 9).Select(b => b.Labels.Take(b.Count).ToArray()).ToList();
        var full = sampler.Epoch(3).Select(b => b.Labels.Take(b.Count).ToArray()).ToList();
        Assert.Equal(full.Skip(9), tail);
    }

    [Fact]
    public void Crop_shift_and_flip_move_pixels_where_expected()
    {
        // 3x3 single channel: values 0..8 row-major
        byte[] img = [0, 10, 20, 30, 40, 50, 60, 70, 80];
        var dst = new float[9];
        BatchSampler.WriteImage(img, dst, 3, 3, 1, dy: 1, dx: 0, flip: false);
        Assert.Equal(new[] { 30, 40, 50, 60, 70, 80, 0, 0, 0 }.Select(v => v / 255f), dst);
        BatchSampler.WriteImage(img, dst, 3, 3, 1, dy: 0, dx: 0, flip: true);
        Assert.Equal(new[] { 20, 10, 0, 50, 40, 30, 80, 70, 60 }.Select(v => v / 255f), dst);
        BatchSampler.WriteImage(img, dst, 3, 3, 1, dy: 0, dx: -1, flip: false);
        Assert.Equal(new[] { 0, 0, 10, 0, 30, 40, 0, 60, 70 }.Select(v => v / 255f), dst);
    }

    [Fact]
    public void Stratified_split_is_balanced_and_disjoint()
    {
        var (images, labels) = TestSupport.RandomImages(200, 2, 2, 1, 10, seed: 8);
        using var ds = new ImageDataset(
            "mem",
            new ArrayImageStore(images, 4),
            labels,
            2,
            2,
            1,
            Enumerable.Range(0, 10).Select(i => $"{i}").ToArray()
        );
        var (taken, rest) = ds.Split(50, seed: 1);
        Assert.Equal(50, taken.Count);
        Assert.Equal(150, rest.Count);
        Assert.All(taken.ClassCounts(), c => Assert.Equal(5, c));
        Assert.Equal(ds.ClassCounts(), taken.ClassCounts().Zip(rest.ClassCounts(), (a, b) => a + b));
    }

    [Fact]
    public void Fashion_mnist_from_the_debian_package_has_its_published_shape()
    {
        using var train = TestSupport.FashionMnist(Split.Train);
        using var test = TestSupport.FashionMnist(Split.Test);
        Assert.Equal((60000, 28, 28, 1), (train.Count, train.Height, train.Width, train.Channels));
        Assert.Equal(10000, test.Count);
        Assert.All(train.ClassCounts(), c => Assert.Equal(6000, c));
        Assert.Equal("Ankle boot", train.ClassNames[9]);
    }
}
