using System.Runtime.InteropServices;

namespace ProxyRobust.Native;

/// <summary>
/// glibc malloc settings for libtorch's buffers. libtorch allocates every activation and gradient with malloc
/// and frees it a few milliseconds later. By default glibc serves blocks above its mmap threshold with a fresh mmap and
/// returns them to the kernel on free, so every large tensor costs page faults again on its next use: a PreAct
/// ResNet-18 probe took 20.7 million page faults and 36 s of kernel time in a 40 s run. Keeping freed memory in the
/// heap (no mmap for large blocks, no trimming) brings that to 0.5 million and 1 s, and the attack step at batch 128
/// from 1,140 to 796 ms (bench/RESULTS.md). Memory then stays at the run's peak instead of shrinking between steps,
/// which is flat over a long run. Set PROXYROBUST_MALLOC=default to keep glibc's own behaviour. Limit: glibc gives
/// threads other than the main one their own arenas, whose extra 64 MiB heaps are unmapped as soon as they are empty
/// whatever these settings say; work on such threads (e.g. inside an xunit test) still pays page faults for large
/// blocks. The command-line tool and the benchmarks compute on the main thread (a PreAct ResNet-18 PGD-AT `train`: 0.50
/// million page faults with the settings, 1.97 million without).
/// </summary>
public static class NativeHeap
{
    private const int MTrimThreshold = -1,
        MMmapMax = -4;
    public const string OptOutVariable = "PROXYROBUST_MALLOC";

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int param, int value);

    /// <summary>True when the settings were applied (Linux with glibc, not opted out).</summary>
    public static bool Applied { get; private set; }

    internal static void KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(OptOutVariable) == "default")
            return;
        try
        {
            Applied = Mallopt(MMmapMax, 0) == 1 & Mallopt(MTrimThreshold, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // Not glibc (e.g. musl): leave the allocator as it is.
        }
    }
}
