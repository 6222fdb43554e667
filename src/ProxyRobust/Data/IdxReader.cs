using System.Buffers.Binary;
using System.IO.Compression;
using ProxyRobust.Core;

namespace ProxyRobust.Data;

/// <summary>IDX files (the MNIST family), gzip-compressed or plain.</summary>
public static class IdxReader
{
    /// <summary>Reads an images file (magic 0x00000803, N x H x W uint8) and its labels file (0x00000801, N
    /// uint8).</summary>
    public static ImageDataset Read(
        string imagesPath,
        string labelsPath,
        IReadOnlyList<string>? classNames = null,
        int? classes = null
    )
    {
        var (imgDims, imgData) = ReadArray(imagesPath);
        if (imgDims.Length != 3)
            throw new DataFormatException(
                imagesPath,
                $"expected a 3-dimensional IDX array (N x H x W), found {imgDims.Length} dimensions"
            );
        var (lblDims, lblData) = ReadArray(labelsPath);
        if (lblDims.Length != 1)
            throw new DataFormatException(
                labelsPath,
                $"expected a 1-dimensional IDX array of labels, found {lblDims.Length} dimensions"
            );
        if (lblDims[0] != imgDims[0])
            throw new DataFormatException(
                labelsPath,
                $"{lblDims[0]} labels but {imagesPath} holds {imgDims[0]} images"
            );
        var labels = new int[lblData.Length];
        for (int i = 0; i < labels.Length; i++)
            labels[i] = lblData[i];
        classNames = ClassNames.For(labels, labelsPath, classNames, classes);
        return new ImageDataset(
            imagesPath,
            new ArrayImageStore(imgData, imgDims[1] * imgDims[2]),
            labels,
            imgDims[1],
            imgDims[2],
            1,
            classNames
        );
    }

    /// <summary>Reads any unsigned-byte IDX array: its dimensions and data.</summary>
    public static (int[] Dims, byte[] Data) ReadArray(string path)
    {
        if (!File.Exists(path))
            throw new DataFormatException(path, "file not found");
        byte[] raw;
        try
        {
            raw = File.ReadAllBytes(path);
            if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
            {
                using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
                using var ms = new MemoryStream();
                gz.CopyTo(ms);
                raw = ms.ToArray();
            }
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(path, $"corrupt gzip stream ({e.Message})", e);
        }
        catch (EndOfStreamException e)
        {
            throw new DataFormatException(path, "gzip stream ends early (truncated file)", e);
        }

        if (raw.Length < 4)
            throw new DataFormatException(path, $"too short for an IDX header ({raw.Length} bytes)");
        if (raw[0] != 0 || raw[1] != 0)
            throw new DataFormatException(path, "not an IDX file (the magic number must start with two zero bytes)");
        if (raw[2] != 0x08)
            throw new DataFormatException(path, $"IDX data type 0x{raw[2]:x2} is not unsigned byte (0x08)");
        int rank = raw[3];
        if (rank is < 1 or > 4)
            throw new DataFormatException(path, $"IDX rank {rank} is not supported");
        int header = 4 + 4 * rank;
        if (raw.Length < header)
            throw new DataFormatException(path, "truncated IDX header");
        var dims = new int[rank];
        long expected = 1;
        for (int d = 0; d < rank; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(raw.AsSpan(4 + 4 * d));
            if (dims[d] <= 0)
                throw new DataFormatException(path, $"dimension {d} has size {dims[d]}");
            expected *= dims[d];
        }
        long actual = raw.LongLength - header;
        if (actual != expected)
            throw new DataFormatException(
                path,
                actual < expected
                    ? $"truncated: header promises {expected} bytes of data ({string.Join(" x ", dims)}), file "
                        + $"holds {actual}"
                    : $"{actual - expected} unexpected bytes after the {string.Join(" x ", dims)} array"
            );
        return (dims, raw.AsSpan(header).ToArray());
    }
}
