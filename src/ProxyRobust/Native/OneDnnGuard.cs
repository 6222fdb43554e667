using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace ProxyRobust.Native;

/// <summary>Whether libtorch's oneDNN (mkldnn) kernels are in use, and why not when they are not;
/// <paramref name="RepairedCaches"/>: the cache sizes given to oneDNN where the CPU hid them
/// (<see cref="OneDnnCacheRepair"/>).</summary>
public sealed record OneDnnState(bool Enabled, string? Reason, CacheSizes? RepairedCaches = null);

/// <summary>
/// Repairs, or turns off, libtorch's oneDNN kernels on hosts where they compute wrong numbers. oneDNN 3.7.1 (inside
/// libtorch 2.10) sizes its blocking from the caches that Xbyak reads from CPUID. On AMD it reads leaf 0x8000001D
/// only, and some virtual machines leave that leaf empty (no topology extensions): every cache is then computed as 1
/// byte, and convolution kernels tuned for that give wrong results (a PreAct ResNet-18's first-layer weight gradient
/// 18% off in channels-last) and NaN gradients in the UNet and GAN within a few steps. Seen on a 2-core AMD EPYC with
/// AVX-512 that failed 7 tests, and reproduced exactly (the same wrong numbers) on an Intel host by trapping CPUID to
/// report an AMD vendor with that leaf empty (bench/RESULTS.md). Limiting oneDNN to AVX2 still left NaNs. Such a host
/// first gets its cache sizes repaired (<see cref="OneDnnCacheRepair"/>, checked against float64); where that fails,
/// oneDNN is switched off and libtorch convolves by im2col and BLAS, which is about 3x slower but right.
/// PROXYROBUST_ONEDNN=on (oneDNN as it is, no repair) or off overrides the check.
/// </summary>
public static class OneDnnGuard
{
    public const string OverrideVariable = "PROXYROBUST_ONEDNN";

    /// <summary>One CPUID answer (EAX, EBX, ECX, EDX).</summary>
    public readonly record struct CpuIdResult(uint Eax, uint Ebx, uint Ecx, uint Edx);

    /// <summary>
    /// Why oneDNN would size its kernels for empty caches on this CPU, or null when it would not. Follows Xbyak's own
    /// reading (xbyak_util.h, setCacheHierarchy): on AMD, size = ways x partitions x line x sets from leaf 0x8000001D
    /// sub-leaves 0 (L1 data), 2 (L2) and 3 (L3), each field stored minus one, so an empty leaf gives 1 byte (AMD
    /// answers zeros for a leaf above its maximum, so a VM that hides the leaf gives the same).
    /// </summary>
    public static string? WrongCacheSizes(Func<uint, uint, CpuIdResult> cpuid)
    {
        if (XbyakCacheSizes(cpuid) is not { } sizes)
            return null;
        var wrong = new List<string>();
        foreach (
            var (size, name, minimum) in new[]
            {
                (sizes.L1Data, "L1 data", 4u << 10),
                (sizes.L2, "L2", 64u << 10),
                (sizes.L3, "L3", 64u << 10),
            }
        )
        {
            if (size < minimum)
                wrong.Add($"{name} {size} B");
        }
        return wrong.Count == 0
            ? null
            : "this AMD CPU reports no cache sizes in CPUID leaf 0x8000001D (as some virtual machines do), so oneDNN "
                + $"sizes its kernels for {string.Join(", ", wrong)} and computes wrong convolutions";
    }

    /// <summary>The cache sizes Xbyak computes on an AMD CPU (sub-leaves 0, 2 and 3 of leaf 0x8000001D, in uint32 as
    /// Xbyak multiplies), or null on another vendor's CPU.</summary>
    public static CacheSizes? XbyakCacheSizes(Func<uint, uint, CpuIdResult> cpuid)
    {
        if (Vendor(cpuid(0, 0)) != "AuthenticAMD")
            return null;
        uint Size(uint subLeaf)
        {
            var r = cpuid(0x8000001D, subLeaf);
            return unchecked(
                (Bits(r.Ebx, 22, 31) + 1) * (Bits(r.Ebx, 12, 21) + 1) * (Bits(r.Ebx, 0, 11) + 1) * (r.Ecx + 1)
            );
        }
        return new(Size(0), Size(2), Size(3));
    }

    /// <summary>The decision for this process: the override if set, else the CPU check, and where it finds wrong
    /// cache sizes, their repair (which throws <see cref="InvalidOperationException"/> saying why it failed).</summary>
    internal static OneDnnState Decide(string? overrideValue, Func<string?> check, Func<CacheSizes> repair) =>
        overrideValue?.Trim().ToLowerInvariant() switch
        {
            "on" => new(true, null),
            "off" => new(false, $"{OverrideVariable}=off"),
            null or "" or "auto" => check() is { } why ? Repaired(why, repair) : new(true, null),
            var other => throw new ArgumentException(
                $"{OverrideVariable}={other}: expected on, off or auto (the default: repaired, or else off, only where "
                    + "oneDNN's convolutions are known to be wrong)"
            ),
        };

    private static OneDnnState Repaired(string why, Func<CacheSizes> repair)
    {
        try
        {
            return new(true, null, repair());
        }
        catch (InvalidOperationException e)
        {
            return new(false, $"{why}; its cache sizes could not be repaired: {e.Message}");
        }
    }

    /// <summary>This host's CPU check (null when the CPU is not x86 or oneDNN sizes its kernels right).</summary>
    internal static string? CheckThisCpu() => X86Base.IsSupported ? WrongCacheSizes(HostCpuId) : null;

    /// <summary>Repairs this host's oneDNN cache sizes (only called where <see cref="CheckThisCpu"/> found them
    /// wrong, so on x86).</summary>
    internal static CacheSizes RepairThisCpu() =>
        OneDnnCacheRepair.Repair(XbyakCacheSizes(HostCpuId)!.Value, OneDnnCacheRepair.LegacyCacheSizes(HostCpuId));

    private static CpuIdResult HostCpuId(uint leaf, uint sub)
    {
        var (a, b, c, d) = X86Base.CpuId(unchecked((int)leaf), (int)sub);
        return new((uint)a, (uint)b, (uint)c, (uint)d);
    }

    /// <summary>
    /// libtorch's own switches (at::globalContext().setUserEnabledMkldnn, and setUserEnabledNNPACK: libtorch tries
    /// NNPACK for some convolutions, which sizes itself from the same empty cache leaf and warns on every call that it
    /// cannot start, so on such a CPU it stays off either way). Returns the oneDNN switch as read back.
    /// </summary>
    internal static bool SetEnabled(bool enabled)
    {
        // NNPACK reads the caches through cpuinfo, from the same leaf; where that is empty it stays off.
        bool nnpack = enabled && CheckThisCpu() is null;
        var entries = Entries.Value;
        var context = entries.Context;
        entries.SetMkldnn(context, enabled ? (byte)1 : (byte)0);
        entries.SetNnpack(context, nnpack ? (byte)1 : (byte)0);
        return entries.GetMkldnn(context) != 0;
    }

    /// <summary>Whether libtorch will use oneDNN now (its switch, read from libtorch).</summary>
    internal static bool IsEnabled() => Entries.Value.GetMkldnn(Entries.Value.Context) != 0;

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr GlobalContext();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetFlag(IntPtr context, byte value);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate byte GetFlag(IntPtr context);

    private sealed record ContextEntries(IntPtr Context, SetFlag SetMkldnn, GetFlag GetMkldnn, SetFlag SetNnpack);

    private static readonly Lazy<ContextEntries> Entries = new(() =>
    {
        // libtorch_cpu is loaded by TorchSharp before this runs; dlopen by name returns that same copy. The C++ names:
        // at::globalContext(), at::Context::setUserEnabledMkldnn(bool), at::Context::userEnabledMkldnn() const and
        // at::Context::setUserEnabledNNPACK(bool).
        var library = NativeLibrary.Load(OperatingSystem.IsMacOS() ? "libtorch_cpu.dylib" : "libtorch_cpu.so");
        T Export<T>(string name)
            where T : Delegate => Marshal.GetDelegateForFunctionPointer<T>(NativeLibrary.GetExport(library, name));
        return new(
            Export<GlobalContext>("_ZN2at13globalContextEv")(),
            Export<SetFlag>("_ZN2at7Context20setUserEnabledMkldnnEb"),
            Export<GetFlag>("_ZNK2at7Context17userEnabledMkldnnEv"),
            Export<SetFlag>("_ZN2at7Context20setUserEnabledNNPACKEb")
        );
    });

    private static string Vendor(CpuIdResult r)
    {
        Span<byte> bytes = stackalloc byte[12];
        BitConverter.TryWriteBytes(bytes[..4], r.Ebx);
        BitConverter.TryWriteBytes(bytes[4..8], r.Edx);
        BitConverter.TryWriteBytes(bytes[8..], r.Ecx);
        return System.Text.Encoding.ASCII.GetString(bytes);
    }

    // Xbyak's extractBit(value, base, end) keeps end - base bits (one fewer than the field): copied as it is, since the
    // point is to predict what oneDNN computes.
    private static uint Bits(uint value, int low, int end) => (value >> low) & ((1u << (end - low)) - 1);
}
