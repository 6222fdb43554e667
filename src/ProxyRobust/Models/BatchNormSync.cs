using ProxyRobust.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>
/// Synchronised batch normalisation for data-parallel training (issue 15, `train --sync-batchnorm`): inside
/// <see cref="Across"/>, every BatchNorm2d of our classifiers in training mode normalises with the mean and variance of
/// the whole global batch, summed over the ranks, instead of its own shard's (PyTorch's SyncBatchNorm). The N-rank
/// step then equals the one-process step on the combined batch, as the per-rank statistics (PyTorch DDP's default) do
/// not. Costs two small all-reduces per layer and forward pass, and two in the backward pass. The modules stay plain
/// BatchNorm2d: checkpoints, evaluation and export do not change.
/// </summary>
public static class BatchNormSync
{
    [ThreadStatic]
    private static IRanks? active;

    /// <summary>Synchronises the batch norms called on this thread across <paramref name="ranks"/> until
    /// disposed.</summary>
    public static IDisposable Across(IRanks ranks)
    {
        var previous = active;
        active = ranks.Size > 1 ? ranks : null;
        return new Restore(previous);
    }

    /// <summary>What the classifiers call instead of <c>bn.call(x)</c>.</summary>
    public static Tensor Normalise(BatchNorm2d bn, Tensor x) =>
        active is null || !bn.training || bn.running_mean is null ? bn.call(x) : Synchronised(bn, x, active);

    /// <summary>Batch norm over the union of the ranks' batches. Two passes (mean first, then the sum of squared
    /// deviations from it) rather than E[x^2] - E[x]^2, which loses float32 digits when the mean is large.</summary>
    private static Tensor Synchronised(BatchNorm2d bn, Tensor x, IRanks ranks)
    {
        using var scope = NewDisposeScope();
        long channels = x.shape[1];
        long[] dims = [0, 2, 3];
        var count = tensor(new float[] { x.numel() / channels });
        var sums = ranks.SumAcrossRanks(cat([x.sum(dims), count]));
        var n = sums[channels].item<float>(); // rows x pixels of the global batch, per channel
        var mean = sums.narrow(0, 0, channels) / n;
        var centred = x - mean.view(1, channels, 1, 1);
        var variance = ranks.SumAcrossRanks(centred.square().sum(dims)) / n; // biased, as batch norm normalises
        var y = centred * (variance + bn.eps).rsqrt().view(1, channels, 1, 1);
        if (bn.weight is not null)
            y = y * bn.weight.view(1, channels, 1, 1);
        if (bn.bias is not null)
            y = y + bn.bias.view(1, channels, 1, 1);
        using (no_grad())
        {
            // running statistics as F.batch_norm keeps them: unbiased variance, momentum (or the cumulative average)
            bn.num_batches_tracked?.add_(1);
            double m = bn.momentum ?? 1.0 / bn.num_batches_tracked!.item<long>();
            bn.running_mean!.mul_(1 - m).add_(mean.detach(), alpha: m);
            bn.running_var!.mul_(1 - m).add_(variance.detach() * (n / Math.Max(1, n - 1)), alpha: m);
        }
        return y.MoveToOuterDisposeScope();
    }

    private sealed class Restore(IRanks? previous) : IDisposable
    {
        public void Dispose() => active = previous;
    }
}
