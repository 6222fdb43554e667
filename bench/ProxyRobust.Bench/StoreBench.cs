using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using ProxyRobust.Data;

namespace ProxyRobust.Bench;

/// <summary>
/// Page-cache cost of random draws from a memory-mapped synthetic store (issue 12): a store much larger than the draws,
/// evicted from the page cache first, then random images read. "before" maps the file as the store did before (no
/// advice); "after" is <see cref="MappedImageStore"/> (MADV_RANDOM). Reports resident bytes per drawn image (mincore).
/// </summary>
internal static unsafe partial class StoreBench
{
    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int PosixFadvise(nint fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "mincore")]
    private static partial int Mincore(nint address, nuint length, [Out] byte[] vector);

    public static JsonObject Run(string folder, int imageBytes = 784, int count = 500_000, int draws = 2000)
    {
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "store-bench.bin");
        try
        {
            using (var fs = new FileStream(path, FileMode.Create))
            {
                var chunk = new byte[imageBytes * 1000];
                new Random(1).NextBytes(chunk);
                for (int i = 0; i < count / 1000; i++)
                    fs.Write(chunk);
                fs.Flush(flushToDisk: true);
            }
            var result = new JsonObject
            {
                ["imageBytes"] = imageBytes,
                ["images"] = count,
                ["draws"] = draws,
            };
            // before: a plain read-only mapping, as MappedImageStore was before the advice
            Evict(path);
            using (
                var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read)
            )
            using (var view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read))
            {
                byte* p = null;
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                long length = view.PointerOffset + view.Capacity;
                long sum = Draw(
                    i => new ReadOnlySpan<byte>(p + view.PointerOffset + i * imageBytes, imageBytes),
                    count,
                    draws
                );
                result["beforeBytesPerDraw"] = Resident(p, length) / (double)draws;
                result["checksumBefore"] = sum;
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
            Evict(path);
            using (var store = new MappedImageStore(path, 0, count, imageBytes))
            {
                long sum = Draw(i => store.Image(i), count, draws);
                result["afterBytesPerDraw"] = store.ResidentBytes() / (double)draws;
                result["checksumAfter"] = sum;
            }
            Console.WriteLine(
                $"store random draws ({draws} of {count} images of {imageBytes} B): resident page cache per draw "
                    + $"{(double)result["beforeBytesPerDraw"]! / 1024:F1} KB before (no advice), "
                    + $"{(double)result["afterBytesPerDraw"]! / 1024:F1} KB after (MADV_RANDOM)"
            );
            return result;
        }
        finally
        {
            File.Delete(path);
        }
    }

    private delegate ReadOnlySpan<byte> ImageAt(long index);

    private static long Draw(ImageAt image, int count, int draws)
    {
        var rng = new Random(2);
        long sum = 0;
        for (int d = 0; d < draws; d++)
            foreach (var b in image(rng.NextInt64(count)))
                sum += b;
        return sum;
    }

    private static void Evict(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read);
        if (PosixFadvise(fs.SafeFileHandle.DangerousGetHandle(), 0, 0, 4) != 0)
            throw new IOException("posix_fadvise(DONTNEED) failed");
    }

    private static long Resident(byte* mapping, long length)
    {
        long page = Environment.SystemPageSize;
        var vector = new byte[(length + page - 1) / page];
        return Mincore((nint)mapping, (nuint)length, vector) == 0 ? vector.LongCount(v => (v & 1) != 0) * page : -1;
    }
}
