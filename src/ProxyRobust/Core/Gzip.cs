using System.Buffers.Binary;
using System.IO.Compression;

namespace ProxyRobust.Core;

/// <summary>gzip files (the shipped sample stores).</summary>
public static class Gzip
{
    /// <summary>
    /// Decompresses <paramref name="source"/> into <paramref name="destination"/>, written whole or not at all. .NET's
    /// GZipStream stops silently at a truncated archive, so the result is checked against the gzip trailer (CRC-32 and
    /// length, RFC 1952): a truncated or corrupt archive is one error naming it, and leaves no file.
    /// </summary>
    public static void Inflate(string source, string destination)
    {
        var trailer = new byte[8];
        using (var f = File.OpenRead(source))
        {
            if (f.Length < 18)
                throw new DataFormatException(source, $"is {f.Length} bytes: too short for a gzip archive");
            f.Seek(-8, SeekOrigin.End);
            f.ReadExactly(trailer);
        }
        uint expectedCrc = BinaryPrimitives.ReadUInt32LittleEndian(trailer),
            expectedLength = BinaryPrimitives.ReadUInt32LittleEndian(trailer.AsSpan(4));
        try
        {
            AtomicFile.Write(
                destination,
                s =>
                {
                    using var gz = new GZipStream(File.OpenRead(source), CompressionMode.Decompress);
                    var buffer = new byte[1 << 16];
                    uint crc = 0xFFFFFFFF,
                        length = 0;
                    for (int n; (n = gz.Read(buffer)) > 0; length += (uint)n)
                    {
                        crc = Crc32.Update(crc, buffer.AsSpan(0, n));
                        s.Write(buffer, 0, n);
                    }
                    if (~crc != expectedCrc || length != expectedLength)
                        throw new InvalidDataException(
                            $"it inflates to {length} bytes with CRC-32 {~crc:x8}, its trailer says {expectedLength} "
                                + $"bytes and {expectedCrc:x8}: truncated or corrupt"
                        );
                }
            );
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
        {
            throw new DataFormatException(source, $"is not a complete gzip archive ({e.Message})", e);
        }
    }

    /// <summary>CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as gzip uses it.</summary>
    private static class Crc32
    {
        private static readonly uint[] Table = Enumerable
            .Range(0, 256)
            .Select(i =>
            {
                uint c = (uint)i;
                for (int k = 0; k < 8; k++)
                    c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
                return c;
            })
            .ToArray();

        public static uint Update(uint crc, ReadOnlySpan<byte> bytes)
        {
            foreach (var b in bytes)
                crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
            return crc;
        }
    }
}
