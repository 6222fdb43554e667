using System.Runtime.InteropServices;
using ProxyRobust.Core;
using ProxyRobust.Data;

namespace ProxyRobust.Tests;

/// <summary>The defects a new user met on another machine (issue 12), each pinned by a test that failed before its
/// fix.</summary>
public sealed partial class FirstContactTests
{
    private static byte[] IdxLabels(byte[] labels)
    {
        var bytes = new byte[8 + labels.Length];
        bytes[2] = 8;
        bytes[3] = 1;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), labels.Length);
        labels.CopyTo(bytes, 8);
        return bytes;
    }

    private static byte[] IdxImages(int n, int h, int w)
    {
        var bytes = new byte[16 + n * h * w];
        bytes[2] = 8;
        bytes[3] = 3;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), n);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), h);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), w);
        return bytes;
    }

    /// <summary>One label 11 among a 10-class set: before, the class count became 12 with an empty class 10,
    /// silently.</summary>
    [Fact]
    public void A_label_beyond_the_classes_is_an_error_unless_the_count_is_declared()
    {
        using var tmp = new TempDir();
        var labels = Enumerable.Range(0, 40).Select(i => (byte)(i % 10)).ToArray();
        labels[17] = 11;
        Directory.CreateDirectory(tmp.File("idx"));
        File.WriteAllBytes(tmp.File("idx/train-images-idx3-ubyte"), IdxImages(40, 4, 4));
        File.WriteAllBytes(tmp.File("idx/train-labels-idx1-ubyte"), IdxLabels(labels));

        var e = Assert.Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("idx"), Split.Train));
        Assert.Contains("train-labels-idx1-ubyte", e.FilePath);
        Assert.Contains("index 17", e.Message);
        Assert.Contains("10", e.Message); // the class without an image
        // declared: 10 classes -> 11 is out of range; 12 classes -> accepted as the user says
        Assert.Contains(
            "outside 0..9",
            Assert
                .Throws<DataFormatException>(() => DatasetLoader.Load(tmp.File("idx"), Split.Train, classes: 10))
                .Message
        );
        using var twelve = DatasetLoader.Load(tmp.File("idx"), Split.Train, classes: 12);
        Assert.Equal(12, twelve.NumClasses);
        // through the CLI: one error naming the file, exit 1
        var r = TestSupport.RunCli("data", "info", "--data", tmp.File("idx"), "--grid", tmp.File("g.png"));
        Assert.Equal(1, r.Code);
        Assert.Contains("train-labels-idx1-ubyte", r.Err);
        Assert.Contains("12 classes, declare that number of classes", r.Err);
        // a gap-free set without a declared count still reads (classes 0..9, all present)
        labels[17] = 7;
        File.WriteAllBytes(tmp.File("idx/train-labels-idx1-ubyte"), IdxLabels(labels));
        using var fine = DatasetLoader.Load(tmp.File("idx"), Split.Train);
        Assert.Equal(10, fine.NumClasses);
    }

    /// <summary>Before, --eps -0.1 was accepted and training failed later; now every range is checked before any
    /// work.</summary>
    [Theory]
    [InlineData("--eps", "-0.1")]
    [InlineData("--gamma", "1.5")]
    [InlineData("--epochs", "0")]
    [InlineData("--lr", "0")]
    [InlineData("--train-size", "-5")]
    [InlineData("--ema", "1")]
    public void Out_of_range_options_are_usage_errors_naming_the_option(string option, string value)
    {
        using var tmp = new TempDir();
        var r = TestSupport.RunCli("train", "--method", "pgd", option, value, "--out", tmp.File("run"));
        Assert.Equal(2, r.Code);
        Assert.Contains(option, r.Err);
        Assert.False(Directory.Exists(tmp.File("run")), "work started before the options were checked");
    }

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int PosixFadvise(nint fd, long offset, long length, int advice);

    /// <summary>
    /// Random draws from a store larger than the draws: resident file pages must stay within a small multiple
    /// of the pages the drawn images occupy. Before the fix, each fault read ahead ~128 KB (80x a 784-byte image).
    /// </summary>
    [Fact]
    public void Random_draws_from_a_mapped_store_read_little_more_than_the_drawn_images()
    {
        const int imageBytes = 784,
            count = 100_000,
            draws = 300;
        // On the test binaries' disk (not /tmp, which may be memory-backed tmpfs where every page is always resident).
        var dir = Directory.CreateDirectory(
            Path.Combine(AppContext.BaseDirectory, "store-test-" + Guid.NewGuid().ToString("N"))
        );
        try
        {
            var path = Path.Combine(dir.FullName, "store.bin");
            using (var fs = new FileStream(path, FileMode.CreateNew))
            {
                var chunk = new byte[imageBytes * 1000];
                new Random(3).NextBytes(chunk);
                for (int i = 0; i < count / 1000; i++)
                    fs.Write(chunk);
                fs.Flush(flushToDisk: true);
                // Drop the file from the page cache, as for a store written long ago (or larger than memory).
                Assert.Equal(
                    0,
                    PosixFadvise(
                        fs.SafeFileHandle.DangerousGetHandle(),
                        0,
                        0,
                        4 /* POSIX_FADV_DONTNEED */
                    )
                );
            }
            using var store = new MappedImageStore(path, 0, count, imageBytes);
            long before = store.ResidentBytes();
            Assert.True(before < 64 * imageBytes * 10, $"the file stayed cached ({before} bytes): cannot measure");
            var rng = new Random(4);
            var pages = new HashSet<long>();
            long sum = 0;
            for (int d = 0; d < draws; d++)
            {
                long index = rng.NextInt64(count);
                foreach (var b in store.Image(index))
                    sum += b;
                pages.Add(index * imageBytes / Environment.SystemPageSize);
                pages.Add((index * imageBytes + imageBytes - 1) / Environment.SystemPageSize);
            }
            long resident = store.ResidentBytes() - before;
            long touched = pages.Count * (long)Environment.SystemPageSize;
            Assert.True(sum > 0);
            Assert.True(
                resident <= 3 * touched,
                $"{resident / 1024} KB resident after {draws} draws touching {touched / 1024} KB "
                    + $"({resident / draws} B per draw)"
            );
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
