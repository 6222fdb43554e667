using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using ProxyRobust.Native;
using static TorchSharp.torch;
using CpuId = ProxyRobust.Native.OneDnnGuard.CpuIdResult;

namespace ProxyRobust.Tests;

public sealed class OneDnnGuardTests
{
    /// <summary>CPUID leaf 0 with the vendor string in EBX, EDX, ECX.</summary>
    private static CpuId VendorLeaf(string vendor)
    {
        var b = System.Text.Encoding.ASCII.GetBytes(vendor);
        return new(0x10, BitConverter.ToUInt32(b, 0), BitConverter.ToUInt32(b, 8), BitConverter.ToUInt32(b, 4));
    }

    /// <summary>A cache descriptor of leaf 0x8000001D as AMD's manual lays it out: EBX = ways-1 (bits 22-31),
    /// partitions-1 (12-21), line size-1 (0-11); ECX = sets-1.</summary>
    private static CpuId Cache(int kib, int ways, int line = 64)
    {
        int sets = kib * 1024 / (ways * line);
        return new(0x121, (uint)(((ways - 1) << 22) | (line - 1)), (uint)(sets - 1), 0);
    }

    private static Func<uint, uint, CpuId> Host(string vendor, Func<uint, CpuId> cacheLeaf) =>
        (leaf, sub) =>
            leaf == 0 ? VendorLeaf(vendor)
            : leaf == 0x8000001D ? cacheLeaf(sub)
            : default;

    [Fact]
    public void An_amd_cpu_with_an_empty_cache_leaf_is_caught_and_real_caches_are_not()
    {
        // Empty leaf: every field reads as 0, which Xbyak turns into 1 x 1 x 1 x 1 = 1 byte per cache.
        var empty = OneDnnGuard.WrongCacheSizes(Host("AuthenticAMD", _ => default));
        Assert.NotNull(empty);
        Assert.Contains("L1 data 1 B, L2 1 B, L3 1 B", empty);

        // A Zen 4 core as its manual gives it: 32 KiB 8-way L1d, 1 MiB 8-way L2, 32 MiB 16-way L3 (sub-leaf 1 is the
        // instruction cache, never read).
        var zen4 = Host(
            "AuthenticAMD",
            sub =>
                sub switch
                {
                    0 => Cache(32, 8),
                    2 => Cache(1024, 8),
                    3 => Cache(32 * 1024, 16),
                    _ => default,
                }
        );
        Assert.Null(OneDnnGuard.WrongCacheSizes(zen4));

        // Only the L2 missing is enough (blocking is sized from L2 above all).
        var noL2 = Host("AuthenticAMD", sub => sub == 2 ? default : Cache(sub == 3 ? 32 * 1024 : 32, 8));
        Assert.Equal("L2 1 B", OneDnnGuard.WrongCacheSizes(noL2)!.Split("kernels for ")[1].Split(" and computes")[0]);

        // Intel CPUs take Xbyak's leaf-4 path: the AMD leaf says nothing about them.
        Assert.Null(OneDnnGuard.WrongCacheSizes(Host("GenuineIntel", _ => default)));
    }

    [Fact]
    public void The_override_wins_over_the_check_and_a_bad_value_is_an_error()
    {
        string? Wrong() => "caches of 1 B";
        string? Right() => null;
        var sizes = new CacheSizes(48 << 10, 1 << 20, 4 << 20);
        int repairs = 0;
        CacheSizes Repairs()
        {
            repairs++;
            return sizes;
        }
        CacheSizes Fails() => throw new InvalidOperationException("no older leaves");
        CacheSizes Unexpected() => throw new Xunit.Sdk.XunitException("repair called where it should not be");

        // Wrong caches: repaired where the repair succeeds, off (saying both whys) where it does not.
        Assert.Equal(new OneDnnState(true, null, sizes), OneDnnGuard.Decide(null, Wrong, Repairs));
        Assert.Equal(new OneDnnState(true, null, sizes), OneDnnGuard.Decide("auto", Wrong, Repairs));
        Assert.Equal(2, repairs);
        Assert.Equal(
            new OneDnnState(false, "caches of 1 B; its cache sizes could not be repaired: no older leaves"),
            OneDnnGuard.Decide(null, Wrong, Fails)
        );
        // Right caches and the overrides: no repair.
        Assert.Equal(new OneDnnState(true, null), OneDnnGuard.Decide(null, Right, Unexpected));
        Assert.Equal(new OneDnnState(true, null), OneDnnGuard.Decide(" ON ", Wrong, Unexpected));
        Assert.False(OneDnnGuard.Decide("off", Wrong, Unexpected).Enabled);
        var e = Assert.Throws<ArgumentException>(() => OneDnnGuard.Decide("maybe", Right, Unexpected));
        Assert.Contains(OneDnnGuard.OverrideVariable, e.Message);
    }

    [Fact]
    public void The_older_amd_leaves_give_the_cache_sizes_with_l3_limited_per_core()
    {
        // The EPYC VM of 2026-12-06 as it answered: 0x80000005 ECX 300c0140 (48 KiB L1d), 0x80000006 ECX 04006140
        // (1024 KiB L2), EDX 0fe09140 (1016 x 512 KiB = 508 MiB L3, shared by cores it does not count).
        CpuId Vm(uint leaf, uint sub) =>
            leaf switch
            {
                0x80000000 => new(0x80000021, 0, 0, 0),
                0x80000005 => new(0xff60ff40, 0xff60ff40, 0x300c0140, 0x20080140),
                0x80000006 => new(0x40802040, 0x60804040, 0x04006140, 0x0fe09140),
                _ => default,
            };
        Assert.Equal(
            new CacheSizes(48 << 10, 1 << 20, OneDnnCacheRepair.L3PerCoreLimit),
            OneDnnCacheRepair.LegacyCacheSizes(Vm)
        );
        // An L3 below the limit is kept as it is (2 MiB: EDX[31:18] = 4).
        CpuId SmallL3(uint leaf, uint sub) => leaf == 0x80000006 ? new(0, 0, 0x04006140, 4u << 18) : Vm(leaf, sub);
        Assert.Equal(2u << 20, OneDnnCacheRepair.LegacyCacheSizes(SmallL3)!.Value.L3);
        // Leaves missing (highest extended leaf below 0x80000006) or empty: nothing to repair with.
        Assert.Null(
            OneDnnCacheRepair.LegacyCacheSizes(
                (leaf, sub) => leaf == 0x80000000 ? new(0x80000005, 0, 0, 0) : Vm(leaf, sub)
            )
        );
        Assert.Null(OneDnnCacheRepair.LegacyCacheSizes((leaf, sub) => leaf == 0x80000005 ? default : Vm(leaf, sub)));
    }

    [Fact]
    public void Xbyaks_cpu_description_is_found_by_its_layout_and_nowhere_else()
    {
        // Xbyak's Cpu (oneDNN 3.7.1's xbyak_util.h) written out by hand: type masks, x2APIC flag, two core counts,
        // ten cache sizes, ten sharing counts, the number of levels.
        static byte[] Cpu(ulong type, uint[] sizes, uint[] sharing, uint levels)
        {
            var bytes = new byte[120];
            BitConverter.TryWriteBytes(bytes.AsSpan(0), type);
            BitConverter.TryWriteBytes(bytes.AsSpan(20), 1u); // numCores_
            BitConverter.TryWriteBytes(bytes.AsSpan(24), 1u);
            for (int i = 0; i < sizes.Length; i++)
                BitConverter.TryWriteBytes(bytes.AsSpan(28 + 4 * i), sizes[i]);
            for (int i = 0; i < sharing.Length; i++)
                BitConverter.TryWriteBytes(bytes.AsSpan(68 + 4 * i), sharing[i]);
            BitConverter.TryWriteBytes(bytes.AsSpan(108), levels);
            return bytes;
        }
        const ulong amd = (1UL << 25) | 0xFFFF,
            intel = (1UL << 24) | 0xFFFF;
        var wrong = new CacheSizes(1, 1, 1);
        byte[][] parts =
        [
            new byte[64], // zeros
            Cpu(intel, [1, 1, 1], [1, 1, 1], 3), // an Intel CPU's
            Cpu(amd, [1, 1, 1], [1, 1, 1], 3), // the one: at 64 + 120 = 184
            Cpu(amd, [1, 1, 1, 5], [1, 1, 1], 3), // a fourth level
            Cpu(amd, [48 << 10, 1 << 20, 1], [1, 1, 1], 3), // other sizes
            Cpu(amd, [1, 1, 1], [1, 0, 1], 3), // a cache shared by no core
            Cpu(amd, [1, 1, 1], [1, 1, 1], 2), // two levels
        ];
        var memory = parts.SelectMany(p => p).ToArray();
        Assert.Equal([184], OneDnnCacheRepair.FindXbyakCpu(memory, wrong));
        // Only at 8-byte steps (the object holds uint64s), and none in a buffer too short for it.
        Assert.Empty(OneDnnCacheRepair.FindXbyakCpu(memory.AsSpan(4), wrong));
        Assert.Empty(OneDnnCacheRepair.FindXbyakCpu(memory.AsSpan(184, 100), wrong));
    }

    [Fact]
    public void Without_onednn_libtorch_runs_other_kernels_that_agree_with_float64()
    {
        // The fallback must change the kernels (else it protects nothing) and keep every layer right, on any host;
        // where the guard leaves oneDNN on, oneDNN must be right too. Tests run one at a time (xunit.runner.json), so
        // switching libtorch's global flag here touches no other test; it is put back as the guard set it.
        TestSupport.InitTorch();
        bool byDefault = TorchRuntime.OneDnn.Enabled;
        using var generator = new Generator(5);
        using var x = rand([4, 3, 32, 32], generator: generator);
        using var w = randn([64, 3, 3, 3], generator: generator);
        try
        {
            Assert.True(OneDnnGuard.SetEnabled(true));
            using var withOneDnn = nn.functional.conv2d(x, w, padding: [1, 1]);
            if (byDefault)
                Assert.True(NumericsCheck.Run().Passed, "the guard left a wrong oneDNN on: run 'proxyrobust check'");
            Assert.False(OneDnnGuard.SetEnabled(false));
            Assert.False(OneDnnGuard.IsEnabled());
            using var without = nn.functional.conv2d(x, w, padding: [1, 1]);
            // Another summation order: not the same bits (and, where oneDNN is right, close).
            Assert.True(
                (without - withOneDnn).abs().max().item<float>() > 0,
                "the same bits: libtorch still used the same kernel"
            );
            if (byDefault)
                Assert.True(without.allclose(withOneDnn, rtol: 1e-4, atol: 1e-5));
            var report = NumericsCheck.Run();
            var wrong = report.Cases.Where(c => !c.Passed).Select(c => $"{c.Name}: {c.RelativeError:G3}");
            Assert.True(report.Passed, string.Join("; ", wrong));
        }
        finally
        {
            Assert.Equal(byDefault, OneDnnGuard.SetEnabled(byDefault));
        }
    }

    [Fact]
    public void On_a_host_that_looks_like_the_failing_amd_vm_onednn_is_repaired_or_off_and_the_check_passes()
    {
        // The failing machine, rebuilt here: CPUID answers "AuthenticAMD" with an empty cache leaf (the C file says
        // how). Needs a C compiler and CPUID faulting, which the Intel and AMD EPYC hosts here had; without them there
        // is nothing to run.
        if (!File.ReadAllText("/proc/cpuinfo").Contains(" cpuid_fault") || !File.Exists("/usr/bin/cc"))
            return;
        using var tmp = new TempDir();
        var library = tmp.File("fake_amd_cpuid.so");
        var source = Path.Combine(AppContext.BaseDirectory, "Native", "fake_amd_cpuid.c");
        var compile = new ProcessStartInfo("/usr/bin/cc", ["-O2", "-shared", "-fPIC", "-o", library, source, "-ldl"]);
        compile.Environment.Remove("LD_PRELOAD"); // the compiler runs on the host as it is
        using (var cc = Process.Start(compile)!)
        {
            cc.WaitForExit();
            Assert.Equal(0, cc.ExitCode);
        }
        (int Code, string Out, string Err) Check(string onednn, bool oldLeaves = true) =>
            TestSupport.RunDotnetWith(
                new Dictionary<string, string>
                {
                    ["LD_PRELOAD"] = library,
                    [OneDnnGuard.OverrideVariable] = onednn,
                    ["FAKE_AMD_NO_OLD_LEAVES"] = oldLeaves ? "0" : "1",
                },
                null,
                Path.Combine(AppContext.BaseDirectory, "ProxyRobust.Cli.dll"),
                "check"
            );

        // Such a VM still answers the older cache leaves: oneDNN gets their sizes and computes right.
        var repaired = Check("auto");
        Assert.True(repaired.Code == 0, repaired.Out + repaired.Err);
        Assert.Contains("oneDNN: on, with the cache sizes of CPUID's older AMD leaves", repaired.Out);
        Assert.DoesNotContain("WRONG", repaired.Out);
        Assert.DoesNotContain("NNPACK", repaired.Err); // NNPACK, which reads the empty leaf, stays off

        // Without those leaves either: oneDNN off, and libtorch's other kernels are right.
        var guarded = Check("auto", oldLeaves: false);
        Assert.True(guarded.Code == 0, guarded.Out + guarded.Err);
        Assert.Contains("oneDNN: off (this AMD CPU reports no cache sizes in CPUID leaf 0x8000001D", guarded.Out);
        Assert.Contains("could not be repaired: its leaves 0x80000005 and 0x80000006 report no caches", guarded.Out);
        Assert.DoesNotContain("WRONG", guarded.Out);
        Assert.DoesNotContain("NNPACK", guarded.Err); // libtorch's fallback does not try NNPACK on every call

        // With oneDNN forced on as it is, the same host computes a wrong gradient (seen with its AVX-512 kernels; its
        // AVX2 kernels got NaN in GAN training instead, which a one-layer check does not reach).
        if (Avx512F.IsSupported)
        {
            var unguarded = Check("on");
            Assert.Equal(1, unguarded.Code);
            Assert.Contains("oneDNN: on", unguarded.Out);
            Assert.Contains("WRONG", unguarded.Out);
        }
    }
}
