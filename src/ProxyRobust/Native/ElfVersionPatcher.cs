using System.Buffers.Binary;
using System.Text;

namespace ProxyRobust.Native;

/// <summary>
/// Marks one required symbol version of an ELF shared object as weak (VER_FLG_WEAK) so that the
/// dynamic loader accepts the file on a host whose library does not define that version.
/// </summary>
/// <remarks>
/// Why: TorchSharp 0.107's libLibTorchSharp.so requires GLIBCXX_3.4.32 (GCC 13) for a single symbol,
/// <c>std::ios_base_library_init()</c>, which GCC emits only as a link-time marker and never calls.
/// Debian 12's libstdc++ stops at 3.4.30. Setting bit 0x2 in <c>vna_flags</c> of that one Vernaux entry
/// in <c>.gnu.version_r</c> makes the loader tolerate the missing version. Only that 2-byte field changes.
/// This file depends on the BCL alone: the build step (build/ElfPatch) compiles it too.
/// </remarks>
public static class ElfVersionPatcher
{
    public const string LibTorchSharpRequiredVersion = "GLIBCXX_3.4.32";
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlagWeak = 0x2;

    public enum Outcome
    {
        Patched,
        AlreadyWeak,
        VersionNotRequired,
    }

    /// <summary>Patches <paramref name="path"/> in place (write to a temp file, then rename).</summary>
    public static Outcome MakeVersionWeak(string path, string versionName)
    {
        var bytes = File.ReadAllBytes(path);
        var outcome = MakeVersionWeak(bytes, versionName, path);
        if (outcome == Outcome.Patched)
        {
            var tmp = path + ".patching";
            File.WriteAllBytes(tmp, bytes);
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(tmp, File.GetUnixFileMode(path));
            File.Move(tmp, path, overwrite: true);
        }
        return outcome;
    }

    /// <summary>Patches the image in memory; <paramref name="name"/> is used in error messages only.</summary>
    public static Outcome MakeVersionWeak(byte[] elf, string versionName, string name = "<memory>")
    {
        var offset = FindVernauxFlagsOffset(elf, versionName, name);
        if (offset < 0)
            return Outcome.VersionNotRequired;
        var flags = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(offset));
        if ((flags & VerFlagWeak) != 0)
            return Outcome.AlreadyWeak;
        BinaryPrimitives.WriteUInt16LittleEndian(elf.AsSpan(offset), (ushort)(flags | VerFlagWeak));
        return Outcome.Patched;
    }

    /// <summary>Byte offset of <c>vna_flags</c> of the Vernaux naming <paramref name="versionName"/>, or -1.</summary>
    public static int FindVernauxFlagsOffset(byte[] elf, string versionName, string name = "<memory>")
    {
        var s = elf.AsSpan();
        if (s.Length < 64 || s[0] != 0x7f || s[1] != (byte)'E' || s[2] != (byte)'L' || s[3] != (byte)'F')
            throw new InvalidDataException($"{name}: not an ELF file");
        if (s[4] != 2 || s[5] != 1)
            throw new InvalidDataException($"{name}: only 64-bit little-endian ELF files are supported");

        long shoff = BinaryPrimitives.ReadInt64LittleEndian(s[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(s[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(s[0x3C..]);
        if (shoff <= 0 || shentsize < 64 || shoff + (long)shentsize * shnum > s.Length)
            throw new InvalidDataException($"{name}: section header table lies outside the file (truncated?)");

        for (int i = 0; i < shnum; i++)
        {
            var sh = s.Slice((int)(shoff + (long)i * shentsize), shentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed)
                continue;
            long secOff = BinaryPrimitives.ReadInt64LittleEndian(sh[0x18..]);
            long secSize = BinaryPrimitives.ReadInt64LittleEndian(sh[0x20..]);
            int strIndex = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
            int count = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x2C..]);
            if (secOff + secSize > s.Length || strIndex >= shnum)
                throw new InvalidDataException($"{name}: .gnu.version_r lies outside the file (truncated?)");
            var strSh = s.Slice((int)(shoff + (long)strIndex * shentsize), shentsize);
            long strOff = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x18..]);
            long strSize = BinaryPrimitives.ReadInt64LittleEndian(strSh[0x20..]);
            if (strOff + strSize > s.Length)
                throw new InvalidDataException($"{name}: string table lies outside the file (truncated?)");
            var strtab = s.Slice((int)strOff, (int)strSize);

            long need = secOff;
            for (int n = 0; n < count; n++)
            {
                // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32
                int cnt = BinaryPrimitives.ReadUInt16LittleEndian(s[(int)(need + 2)..]);
                long aux = need + BinaryPrimitives.ReadUInt32LittleEndian(s[(int)(need + 8)..]);
                for (int a = 0; a < cnt; a++)
                {
                    // Elf64_Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32
                    int nameOff = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[(int)(aux + 8)..]);
                    if (ReadCString(strtab, nameOff) == versionName)
                        return (int)(aux + 4);
                    aux += BinaryPrimitives.ReadUInt32LittleEndian(s[(int)(aux + 12)..]);
                }
                uint next = BinaryPrimitives.ReadUInt32LittleEndian(s[(int)(need + 12)..]);
                if (next == 0)
                    break;
                need += next;
            }
        }
        return -1;
    }

    private static string ReadCString(ReadOnlySpan<byte> table, int offset)
    {
        if ((uint)offset >= (uint)table.Length)
            return "";
        var rest = table[offset..];
        int end = rest.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? rest : rest[..end]);
    }

    /// <summary>True when some libstdc++.so.6 the loader would use defines <paramref name="versionName"/>.</summary>
    public static bool HostLibStdCxxHas(string versionName)
    {
        var lib = FindHostLibStdCxx();
        if (lib is null)
            return true; // nothing to compare against (not Linux/glibc): leave files alone
        var needle = Encoding.ASCII.GetBytes(versionName + "\0");
        return File.ReadAllBytes(lib).AsSpan().IndexOf(needle) >= 0;
    }

    public static string? FindHostLibStdCxx()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        string[] dirs =
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/lib64",
            "/lib",
        ];
        return dirs.Select(d => Path.Combine(d, "libstdc++.so.6")).FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// Patches every libLibTorchSharp.so under <paramref name="folder"/> when the host needs it.
    /// Returns one line per file describing what was done.
    /// </summary>
    public static IReadOnlyList<string> PatchFolderIfHostNeeds(string folder)
    {
        var report = new List<string>();
        if (!Directory.Exists(folder))
            return report;
        if (HostLibStdCxxHas(LibTorchSharpRequiredVersion))
        {
            report.Add($"host libstdc++ defines {LibTorchSharpRequiredVersion}: nothing to patch");
            return report;
        }
        foreach (var file in Directory.EnumerateFiles(folder, "libLibTorchSharp.so", SearchOption.AllDirectories))
            report.Add($"{file}: {MakeVersionWeak(file, LibTorchSharpRequiredVersion)}");
        return report;
    }
}
