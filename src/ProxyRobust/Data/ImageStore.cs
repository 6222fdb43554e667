using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace ProxyRobust.Data;

/// <summary>Read-only storage of N images, uint8, each H*W*C bytes in HWC order, contiguous.</summary>
public interface IImageStore : IDisposable
{
    long Count { get; }
    int ImageBytes { get; }
    ReadOnlySpan<byte> Image(long index);
}

/// <summary>Images held in a managed array (small data sets, decoded or decompressed files).</summary>
public sealed class ArrayImageStore(byte[] data, int imageBytes) : IImageStore
{
    public long Count { get; } = imageBytes == 0 ? 0 : data.LongLength / imageBytes;
    public int ImageBytes { get; } = imageBytes;
    internal byte[] Data => data;

    public ReadOnlySpan<byte> Image(long index) => data.AsSpan(checked((int)(index * ImageBytes)), ImageBytes);

    public void Dispose() { }
}

/// <summary>
/// Images read in place from a file through a memory map: 10 million images stream with flat memory. The kernel is told
/// that access is random (madvise MADV_RANDOM): without it, every page fault of a random draw read ahead ~128 KB around
/// the image, 80 times the 784 bytes of a Fashion-MNIST image (bench/RESULTS.md).
/// </summary>
public sealed unsafe partial class MappedImageStore : IImageStore
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly byte* _mapping;
    private readonly long _mappingLength;
    private bool _disposed;

    public long Count { get; }
    public int ImageBytes { get; }

    public MappedImageStore(string path, long dataOffset, long count, int imageBytes)
    {
        Count = count;
        ImageBytes = imageBytes;
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset + dataOffset;
        _mapping = p;
        _mappingLength = _view.PointerOffset + _view.Capacity;
        if (OperatingSystem.IsLinux() && _mappingLength > 0)
            _ = Madvise((nint)_mapping, (nuint)_mappingLength, MadvRandom); // advice only: ignoring a failure is safe
    }

    /// <summary>Bytes of the file that are in memory now (mincore): what random draws have cost in page
    /// cache.</summary>
    public long ResidentBytes()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!OperatingSystem.IsLinux() || _mappingLength == 0)
            return -1;
        long page = Environment.SystemPageSize;
        var vector = new byte[(_mappingLength + page - 1) / page];
        if (Mincore((nint)_mapping, (nuint)_mappingLength, vector) != 0)
            return -1;
        return vector.LongCount(v => (v & 1) != 0) * page;
    }

    private const int MadvRandom = 1;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "mincore")]
    private static partial int Mincore(nint address, nuint length, [Out] byte[] vector);

    public ReadOnlySpan<byte> Image(long index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((ulong)index >= (ulong)Count)
            throw new ArgumentOutOfRangeException(nameof(index));
        return new ReadOnlySpan<byte>(_base + index * ImageBytes, ImageBytes);
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
