using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>Parallel loops of our own kernels (ParallelDropout, GroupNormSilu) on as many threads as libtorch is
/// told to use, so that <c>--threads</c> bounds them too.</summary>
internal static class CpuParallel
{
    public static void For(long count, Action<long> body) =>
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, get_num_threads()) }, body);
}
