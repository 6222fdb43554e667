using System.IO.MemoryMappedFiles;

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

/// <summary>Images read in place from a file through a memory map: 10 million images stream with flat memory.</summary>
public sealed unsafe class MappedImageStore : IImageStore
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
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
    }

    public ReadOnlySpan<byte> Image(long index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((ulong)index >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(index));
        return new ReadOnlySpan<byte>(_base + index * ImageBytes, ImageBytes);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
