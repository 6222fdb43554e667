using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

/// <summary>
/// Synchronised batch norm's arithmetic, in one process: a stand-in for a job of two ranks whose other rank holds an
/// identical batch (every sum doubles) must give what native batch norm gives on the batch concatenated with its copy:
/// the output, the gradient reaching this rank's input and parameters, and the running statistics.
/// </summary>
public sealed class BatchNormSyncTests
{
    public BatchNormSyncTests() => TestSupport.InitTorch();

    /// <summary>Two ranks whose other rank always contributes what this one does.</summary>
    private sealed class MirroredPair : IRanks
    {
        public int Rank => 0;
        public int Size => 2;

        public unsafe void SumInPlace(IntPtr buffer, int count)
        {
            var span = new Span<float>((void*)buffer, count);
            foreach (ref var v in span)
                v *= 2;
        }

        public void SumInPlace(double[] values)
        {
            for (int i = 0; i < values.Length; i++)
                values[i] *= 2;
        }

        public byte[][]? GatherToRoot(byte[] local) => [local, local];
    }

    [Fact]
    public void Mirrored_ranks_normalise_like_native_batch_norm_on_the_doubled_batch()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var x = (randn(6, 4, 5, 5) * 3 + 2).requires_grad_(true);
        var upstream = randn(6, 4, 5, 5); // a fixed gradient arriving from the layers above

        var synced = nn.BatchNorm2d(4);
        var native = nn.BatchNorm2d(4);
        using (no_grad())
        {
            synced.weight!.copy_(rand(4) + 0.5);
            synced.bias!.copy_(randn(4));
            native.weight!.copy_(synced.weight);
            native.bias!.copy_(synced.bias);
        }
        synced.train();
        native.train();

        Tensor y;
        using (BatchNormSync.Across(new MirroredPair()))
            y = BatchNormSync.Normalise(synced, x);
        // total loss of the job: this rank's and the mirrored rank's, identical
        (y * upstream)
            .sum()
            .backward();

        var xCopy = x.detach().clone().requires_grad_(true);
        var both = native.call(cat([xCopy, x.detach().clone()]));
        (both * cat([upstream, upstream])).sum().backward();

        Assert.True(y.allclose(both.narrow(0, 0, 6), rtol: 1e-4, atol: 1e-5), "outputs differ");
        Assert.True(x.grad!.allclose(xCopy.grad!, rtol: 1e-4, atol: 1e-5), "input gradients differ");
        // a parameter's gradient on one rank is its share; the all-reduce of gradients then sums the two shares
        Assert.True((synced.weight!.grad! * 2).allclose(native.weight!.grad!, rtol: 1e-4, atol: 1e-5), "weight grad");
        Assert.True((synced.bias!.grad! * 2).allclose(native.bias!.grad!, rtol: 1e-4, atol: 1e-5), "bias grad");
        Assert.True(synced.running_mean!.allclose(native.running_mean!, rtol: 1e-5, atol: 1e-6), "running mean");
        Assert.True(synced.running_var!.allclose(native.running_var!, rtol: 1e-5, atol: 1e-6), "running variance");
        Assert.Equal(1, synced.num_batches_tracked!.item<long>());
    }

    [Fact]
    public void Outside_a_job_and_in_eval_mode_batch_norm_is_the_native_one()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        var x = randn(3, 2, 4, 4);
        var bn = nn.BatchNorm2d(2);
        bn.train();
        using (BatchNormSync.Across(SingleProcess.Instance))
            Assert.True(BatchNormSync.Normalise(bn, x).eq(nn.BatchNorm2d(2).call(x)).all().item<bool>());
        bn.eval();
        using (BatchNormSync.Across(new MirroredPair()))
            Assert.True(BatchNormSync.Normalise(bn, x).eq(bn.call(x)).all().item<bool>());
    }
}
