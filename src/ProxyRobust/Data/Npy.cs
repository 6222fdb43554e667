using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using ProxyRobust.Core;

namespace ProxyRobust.Data;

/// <summary>The NumPy .npy format (versions 1-3): header parsing and writing, little-endian, C order.</summary>
public static partial class Npy
{
    public sealed record Header(string Descr, bool FortranOrder, long[] Shape, long DataOffset)
    {
        public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
        public int ElementSize => int.Parse(Descr[2..], CultureInfo.InvariantCulture);
    }

    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static Header ReadHeader(string path)
    {
        if (!File.Exists(path))
            throw new DataFormatException(path, "file not found");
        using var fs = File.OpenRead(path);
        return ReadHeader(fs, path, fs.Length);
    }

    /// <summary>Parses the header from the start of <paramref name="s"/> (which need not seek, e.g. an .npz entry),
    /// leaving it at the data; <paramref name="length"/>, when known, is checked against the shape.</summary>
    public static Header ReadHeader(Stream s, string path, long? length)
    {
        Span<byte> pre = stackalloc byte[12];
        int got = s.ReadAtLeast(pre[..10], 10, throwOnEndOfStream: false);
        if (got < 10 || !pre[..6].SequenceEqual(Magic))
            throw new DataFormatException(path, "not a .npy file (missing \\x93NUMPY magic)");
        int major = pre[6];
        long headerLen,
            dataStart;
        if (major == 1)
        {
            headerLen = BinaryPrimitives.ReadUInt16LittleEndian(pre[8..]);
            dataStart = 10 + headerLen;
        }
        else if (major is 2 or 3)
        {
            if (s.ReadAtLeast(pre[10..], 2, throwOnEndOfStream: false) < 2)
                throw new DataFormatException(path, "truncated .npy header");
            headerLen = BinaryPrimitives.ReadUInt32LittleEndian(pre[8..]);
            dataStart = 12 + headerLen;
        }
        else
            throw new DataFormatException(path, $".npy format version {major} is not supported");
        if (dataStart > (length ?? long.MaxValue) || headerLen > 1 << 20)
            throw new DataFormatException(path, "truncated .npy header");
        var headerBytes = new byte[headerLen];
        if (s.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false) < headerBytes.Length)
            throw new DataFormatException(path, "truncated .npy header");
        var text = Encoding.Latin1.GetString(headerBytes);

        var descr = DescrRegex().Match(text);
        var fortran = FortranRegex().Match(text);
        var shape = ShapeRegex().Match(text);
        if (!descr.Success || !fortran.Success || !shape.Success)
            throw new DataFormatException(path, $"unreadable .npy header: {text.Trim()}");
        var dims = shape
            .Groups[1]
            .Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => long.Parse(s, CultureInfo.InvariantCulture))
            .ToArray();
        var h = new Header(descr.Groups[1].Value, fortran.Groups[1].Value == "True", dims, dataStart);
        if (h.FortranOrder)
            throw new DataFormatException(path, "Fortran-ordered arrays are not supported (save with C order)");
        if (h.Descr.Length < 3 || h.Descr[0] == '>' && h.ElementSize > 1)
            throw new DataFormatException(path, $"big-endian dtype '{h.Descr}' is not supported");
        long expectedBytes = h.ElementCount * h.ElementSize;
        long actual = (length ?? long.MaxValue) - dataStart;
        if (actual < expectedBytes)
            throw new DataFormatException(
                path,
                $"truncated: shape ({string.Join(", ", dims)}) of {h.Descr} needs {expectedBytes} bytes, file holds "
                    + $"{actual}"
            );
        return h;
    }

    /// <summary>Kind+size of a dtype, ignoring byte order: "u1", "i8", "f4", ...</summary>
    public static string Kind(Header h) => h.Descr[1..];

    /// <summary>Reads a 1-D integer array (labels) as int32. Accepts int64 (the documented type), int32,
    /// uint8.</summary>
    public static int[] ReadLabels(string path)
    {
        if (!File.Exists(path))
            throw new DataFormatException(path, "file not found");
        using var fs = File.OpenRead(path);
        return ReadLabels(fs, path, fs.Length);
    }

    /// <summary>Labels from a stream at the start of a .npy (e.g. an .npz entry).</summary>
    public static int[] ReadLabels(Stream s, string path, long? length = null)
    {
        var h = ReadHeader(s, path, length);
        if (h.Shape.Length != 1)
            throw new DataFormatException(
                path,
                $"labels must be a 1-D array, found shape ({string.Join(", ", h.Shape)})"
            );
        var kind = Kind(h);
        if (kind is not ("i8" or "i4" or "u1"))
            throw new DataFormatException(path, $"labels must be int64 (dtype '{h.Descr}' found)");
        var bytes = new byte[h.ElementCount * h.ElementSize];
        if (s.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false) < bytes.Length)
            throw new DataFormatException(path, $"truncated: {h.ElementCount} labels do not fit in the file");
        var labels = new int[h.Shape[0]];
        for (int i = 0; i < labels.Length; i++)
        {
            long v = kind switch
            {
                "i8" => BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(8 * i)),
                "i4" => BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4 * i)),
                _ => bytes[i],
            };
            if (v < 0 || v > int.MaxValue)
                throw new DataFormatException(path, $"label {v} at index {i} is negative or too large");
            labels[i] = (int)v;
        }
        return labels;
    }

    /// <summary>Reads a 1-D float32 array (e.g. per-sample scores), rejecting NaN.</summary>
    public static float[] ReadFloats(string path)
    {
        var h = ReadHeader(path);
        if (h.Shape.Length != 1 || Kind(h) != "f4")
            throw new DataFormatException(
                path,
                $"expected a 1-D float32 array, found {h.Descr} of shape ({string.Join(", ", h.Shape)})"
            );
        var bytes = ReadData(path, h);
        var values = new float[h.Shape[0]];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new DataFormatException(path, $"value at index {i} is {values[i]}");
        return values;
    }

    private static byte[] ReadData(string path, Header h)
    {
        using var fs = File.OpenRead(path);
        fs.Position = h.DataOffset;
        var bytes = new byte[h.ElementCount * h.ElementSize];
        fs.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>Writes an array atomically; <paramref name="descr"/> like "|u1", "&lt;i8", "&lt;f4".</summary>
    public static void Write(string path, string descr, long[] shape, ReadOnlySpan<byte> data)
    {
        var copy = data.ToArray();
        AtomicFile.Write(path, s => WriteTo(s, descr, shape, copy));
    }

    public static void WriteTo(Stream s, string descr, long[] shape, ReadOnlySpan<byte> data)
    {
        var shapeText = shape.Length == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";
        var dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shapeText}, }}";
        int total = 10 + dict.Length + 1;
        int pad = (64 - total % 64) % 64;
        var header = dict + new string(' ', pad) + "\n";
        Span<byte> pre = stackalloc byte[10];
        Magic.CopyTo(pre);
        pre[6] = 1;
        pre[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(pre[8..], (ushort)header.Length);
        s.Write(pre);
        s.Write(Encoding.Latin1.GetBytes(header));
        s.Write(data);
    }

    /// <summary>Writes float32 values ("&lt;f4") of the given shape atomically.</summary>
    public static void WriteFloats(string path, long[] shape, ReadOnlySpan<float> values) =>
        Write(path, "<f4", shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values));

    public static void WriteLabels(string path, ReadOnlySpan<int> labels)
    {
        var bytes = new byte[labels.Length * 8];
        for (int i = 0; i < labels.Length; i++)
            BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8 * i), labels[i]);
        Write(path, "<i8", [labels.Length], bytes);
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")]
    private static partial Regex DescrRegex();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRegex();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}
