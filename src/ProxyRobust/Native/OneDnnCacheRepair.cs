using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;
using CpuId = ProxyRobust.Native.OneDnnGuard.CpuIdResult;

namespace ProxyRobust.Native;

/// <summary>Cache sizes in bytes, per core, as oneDNN divides them (size / cores sharing).</summary>
public readonly record struct CacheSizes(uint L1Data, uint L2, uint L3)
{
    public override string ToString() => $"L1 data {Kib(L1Data)}, L2 {Kib(L2)}, L3 {Kib(L3)}";

    private static string Kib(uint bytes) =>
        bytes % (1 << 20) == 0
            ? $"{bytes >> 20} MiB"
            : $"{(bytes / 1024.0).ToString("0.#", CultureInfo.InvariantCulture)} KiB";
}

/// <summary>
/// Gives libtorch's oneDNN the cache sizes that an AMD virtual machine hides from it (<see cref="OneDnnGuard"/>: an
/// empty CPUID leaf 0x8000001D makes Xbyak record 1-byte caches, and oneDNN's kernels blocked for those compute wrong
/// convolutions). Such machines still answer AMD's older cache leaves, 0x80000005 (L1) and 0x80000006 (L2, L3), which
/// Linux and glibc read there. oneDNN takes every cache size from one object, Xbyak's <c>Cpu</c>, built once per
/// process on first use and read again whenever a kernel is planned; so: build it (for a 2x2 bfloat16 product libtorch
/// asks oneDNN whether the CPU multiplies bfloat16), find it in libtorch's writable memory by its layout and its wrong
/// values, write the older leaves' sizes into it, and check every layer our models use against float64 (<see
/// cref="NumericsCheck"/>). If any step fails the old values are put back and oneDNN stays off. On the 2-core AMD EPYC
/// of 2026-12-06 this took the UNet's training step from 3.7-3.8 s (oneDNN off) to 1.1-1.2 s (bench/RESULTS.md).
/// </summary>
public static class OneDnnCacheRepair
{
    /// <summary>
    /// The L3 size per core given to oneDNN at most. A VM's leaf 0x80000006 reports the L3 it was given, which is
    /// shared by cores that leaf does not count (508 MiB on the EPYC above); a Zen core has 4 MiB of L3 to itself
    /// (32 MiB per 8-core complex), which is also what oneDNN's blocking was measured against there.
    /// </summary>
    public const uint L3PerCoreLimit = 4 << 20;

    /// <summary>
    /// The sizes AMD's older leaves give (AMD64 manual, CPUID Fn8000_0005 ECX[31:24]: L1 data in KiB; Fn8000_0006
    /// ECX[31:16]: L2 in KiB, EDX[31:18]: L3 in units of 512 KiB), L3 limited to <see cref="L3PerCoreLimit"/>; null
    /// when a leaf is missing or reports no cache.
    /// </summary>
    public static CacheSizes? LegacyCacheSizes(Func<uint, uint, CpuId> cpuid)
    {
        if (cpuid(0x80000000, 0).Eax < 0x80000006)
            return null;
        var l1 = cpuid(0x80000005, 0);
        var l2l3 = cpuid(0x80000006, 0);
        ulong l1Data = (ulong)(l1.Ecx >> 24) << 10,
            l2 = (ulong)(l2l3.Ecx >> 16) << 10,
            l3 = (ulong)(l2l3.Edx >> 18) << 19;
        if (l1Data < 4 << 10 || l2 < 64 << 10 || l3 < 64 << 10)
            return null;
        var exp = Environment.GetEnvironmentVariable("XX_L3");
        if (exp is not null)
            return new((uint)l1Data, (uint)l2, uint.Parse(exp));
        return new((uint)l1Data, (uint)l2, (uint)Math.Min(l3, L3PerCoreLimit));
    }

    // Xbyak's Cpu as oneDNN 3.7.1 lays it out (xbyak_util.h): Type type_ (two uint64 feature masks), bool
    // x2APIC_supported_, uint32 numCores_[2], uint32 dataCacheSize_[10], uint32 coresSharignDataCache_[10], uint32
    // dataCacheLevels_, ... Offsets in bytes from the object's start (8-byte aligned).
    private const int SizesAt = 28,
        SharingAt = 68,
        LevelsAt = 108,
        ObjectBytes = 112;
    private const int Levels = 10;
    private const ulong AmdBit = 1UL << 25,
        IntelBit = 1UL << 24;

    /// <summary>
    /// Offsets in <paramref name="memory"/> (8-byte steps from its start) where an Xbyak <c>Cpu</c> of an AMD CPU
    /// with the given wrong cache sizes sits: the AMD feature bit set and the Intel one clear, three data cache
    /// levels, their sizes equal to <paramref name="wrong"/> and the other seven zero, each shared by at least one
    /// core and the other seven by none. Pure, so the tests can hand it any bytes.
    /// </summary>
    public static List<int> FindXbyakCpu(ReadOnlySpan<byte> memory, CacheSizes wrong)
    {
        var found = new List<int>();
        for (int at = 0; at + ObjectBytes <= memory.Length; at += 8)
        {
            var o = memory[at..];
            ulong type = BitConverter.ToUInt64(o);
            if ((type & AmdBit) == 0 || (type & IntelBit) != 0 || UInt(o, LevelsAt) != 3 || o[16] > 1)
                continue;
            if (
                UInt(o, SizesAt) != wrong.L1Data
                || UInt(o, SizesAt + 4) != wrong.L2
                || UInt(o, SizesAt + 8) != wrong.L3
            )
                continue;
            bool layout = true;
            for (int level = 0; level < Levels && layout; level++)
            {
                uint sharing = UInt(o, SharingAt + 4 * level);
                layout = level < 3 ? sharing >= 1 : sharing == 0 && UInt(o, SizesAt + 4 * level) == 0;
            }
            if (layout)
                found.Add(at);
        }
        return found;

        static uint UInt(ReadOnlySpan<byte> o, int offset) => BitConverter.ToUInt32(o[offset..]);
    }

    /// <summary>
    /// Repairs this process's oneDNN cache sizes (<paramref name="wrong"/>: what Xbyak computed from the empty leaf).
    /// Returns what was set, or throws <see cref="InvalidOperationException"/> saying why it could not be done (then
    /// nothing was changed, or the change was undone).
    /// </summary>
    internal static unsafe CacheSizes Repair(CacheSizes wrong, CacheSizes? legacy)
    {
        if (legacy is not { } sizes)
            throw new InvalidOperationException("its leaves 0x80000005 and 0x80000006 report no caches either");
        OneDnnGuard.SetEnabled(true);
        // Builds Xbyak's Cpu: libtorch asks oneDNN whether the CPU multiplies bfloat16 natively.
        using (var m = ones(2, 2, ScalarType.BFloat16))
            m.mm(m).Dispose();
        List<(IntPtr From, int Length)> memory;
        try
        {
            memory = LibTorchWritableMemory();
        }
        catch (IOException e)
        {
            throw new InvalidOperationException($"this process's memory map could not be read ({e.Message})", e);
        }
        var found = new List<IntPtr>();
        foreach (var (from, length) in memory)
        {
            foreach (int at in FindXbyakCpu(new ReadOnlySpan<byte>((void*)from, length), wrong))
                found.Add(from + at);
        }
        if (found.Count != 1)
            throw new InvalidOperationException(
                $"{found.Count} copies of Xbyak's CPU description found in libtorch's memory, where one was expected"
            );
        uint* cpu = (uint*)found[0];
        uint[] saved = [.. Levels3(cpu, SizesAt), .. Levels3(cpu, SharingAt)];
        Write(cpu, [sizes.L1Data, sizes.L2, sizes.L3, 1, 1, 1]); // each cache of one core's own
        List<string> wrongCases;
        try
        {
            wrongCases = NumericsCheck.Cases().Where(c => !c.Passed).Select(c => c.Name).ToList();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Write(cpu, saved);
            throw new InvalidOperationException($"the check against float64 failed to run ({e.Message})", e);
        }
        if (wrongCases.Count == 0)
            return sizes;
        Write(cpu, saved);
        throw new InvalidOperationException(
            $"with {sizes} oneDNN still computed {wrongCases.Count} wrong results ({wrongCases[0]}, ...)"
        );

        static uint[] Levels3(uint* cpu, int at) => [cpu[at / 4], cpu[at / 4 + 1], cpu[at / 4 + 2]];

        // The three data levels' sizes, then how many cores share each.
        static void Write(uint* cpu, uint[] values)
        {
            for (int level = 0; level < 3; level++)
            {
                cpu[SizesAt / 4 + level] = values[level];
                cpu[SharingAt / 4 + level] = values[3 + level];
            }
        }
    }

    /// <summary>The writable mappings of libtorch_cpu in this process, with the anonymous mapping right after them
    /// (where the part of .bss beyond the file lives): start address and length.</summary>
    private static List<(IntPtr From, int Length)> LibTorchWritableMemory()
    {
        var ranges = new List<(IntPtr, int)>();
        long torchEnd = -1;
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            var bounds = fields[0].Split('-');
            long from = long.Parse(bounds[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                to = long.Parse(bounds[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            bool torch = fields.Length == 6 && fields[5].Contains("libtorch_cpu.", StringComparison.Ordinal);
            bool bssTail = fields.Length < 6 && from == torchEnd;
            if (fields[1].StartsWith("rw", StringComparison.Ordinal) && (torch || bssTail) && to - from < int.MaxValue)
                ranges.Add(((IntPtr)from, (int)(to - from)));
            torchEnd = torch ? to : -1;
        }
        return ranges;
    }
}
