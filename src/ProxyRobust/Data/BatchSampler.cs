using ProxyRobust.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Data;

/// <summary>Training-time augmentation: random crop after zero padding, and optional horizontal flip (wrong for some
/// data).</summary>
public sealed record AugmentOptions(int CropPadding = 0, bool HorizontalFlip = false)
{
    public static readonly AugmentOptions None = new();
    public bool Any => CropPadding > 0 || HorizontalFlip;

    /// <summary>Draws one image's shift and flip (no change without a generator).</summary>
    public (int Dy, int Dx, bool Flip) Draw(Random? rng)
    {
        if (rng is null)
            return (0, 0, false);
        int dy = 0,
            dx = 0;
        if (CropPadding > 0)
        {
            dy = rng.Next(-CropPadding, CropPadding + 1);
            dx = rng.Next(-CropPadding, CropPadding + 1);
        }
        return (dy, dx, HorizontalFlip && rng.Next(2) == 1);
    }
}

/// <summary>One batch in host memory: float NCHW in [0,1] and labels. Buffers are reused: copy before the next
/// batch.</summary>
public sealed class HostBatch(int capacity, int channels, int height, int width)
{
    public float[] Images { get; } = new float[capacity * channels * height * width];
    public long[] Labels { get; } = new long[capacity];
    public int Count { get; internal set; }
    public int Channels => channels;
    public int Height => height;
    public int Width => width;

    /// <summary>Copies the batch into new tensors (one copy, no managed allocation), on <paramref
    /// name="device"/>.</summary>
    public (Tensor Images, Tensor Labels) ToTensors(Device device)
    {
        var x = empty([Count, channels, height, width], ScalarType.Float32);
        x.data<float>().CopyFrom(new ReadOnlySpan<float>(Images, 0, Count * channels * height * width), 0, 0);
        var y = empty([Count], ScalarType.Int64);
        y.data<long>().CopyFrom(new ReadOnlySpan<long>(Labels, 0, Count), 0, 0);
        if (device.type == DeviceType.CPU)
            return (x, y);
        using (x)
        using (y)
            return (x.to(device), y.to(device));
    }
}

/// <summary>
/// Seeded batches over a data set. The order of epoch e and the augmentation of batch b depend only on
/// (seed, e, b), so a resumed run sees exactly the batches an uninterrupted one would. The next batch is
/// prepared on a worker thread while the caller trains on the current one.
/// </summary>
public sealed class BatchSampler(
    ImageDataset data,
    int batchSize,
    bool shuffle,
    AugmentOptions augment,
    int seed,
    bool dropLast = false
)
{
    private static readonly float[] ByteToUnit = Enumerable.Range(0, 256).Select(i => i / 255f).ToArray();

    public ImageDataset Data => data;

    /// <summary>Every image of <paramref name="data"/>, in order and unaugmented, as one batch of tensors on <paramref
    /// name="device"/>.</summary>
    public static (Tensor Images, Tensor Labels) All(ImageDataset data, Device device) =>
        new BatchSampler(data, data.Count, shuffle: false, AugmentOptions.None, seed: 0)
            .Epoch(0)
            .First()
            .ToTensors(device);

    /// <summary>
    /// Runs <paramref name="body"/> on every image of <paramref name="data"/>, in order and unaugmented, in batches on
    /// <paramref name="device"/>: (images, labels, index of the batch's first image, its count), each batch in its own
    /// dispose scope, with (done, total) reported after each. The one loop of inference over a data set (labelling,
    /// features, scores, minimum-norm attacks).
    /// </summary>
    public static void ForEachInOrder(
        ImageDataset data,
        int batchSize,
        Device device,
        Action<Tensor, Tensor, int, int> body,
        IProgress<(int Done, int Total)>? progress = null
    )
    {
        int done = 0;
        foreach (var batch in new BatchSampler(data, batchSize, shuffle: false, AugmentOptions.None, 0).Epoch(0))
        {
            using (NewDisposeScope())
            {
                var (x, y) = batch.ToTensors(device);
                body(x, y, done, batch.Count);
            }
            done += batch.Count;
            progress?.Report((done, data.Count));
        }
    }

    public int BatchSize => batchSize;
    public int BatchesPerEpoch => dropLast ? data.Count / batchSize : (data.Count + batchSize - 1) / batchSize;

    /// <summary>The permutation of epoch <paramref name="epoch"/>.</summary>
    public int[] Order(int epoch)
    {
        var order = Enumerable.Range(0, data.Count).ToArray();
        if (shuffle)
            new Random(Seeds.Derive(seed, epoch, 0x0D)).Shuffle(order);
        return order;
    }

    /// <summary>Batches of one epoch from batch <paramref name="startBatch"/> on. Each yielded batch is valid until the
    /// next is requested.</summary>
    public IEnumerable<HostBatch> Epoch(int epoch, int startBatch = 0)
    {
        var order = Order(epoch);
        int count = BatchesPerEpoch;
        if (startBatch >= count)
            yield break;
        var buffers = new[] { NewBatch(), NewBatch() };
        var pending = Task.Run(() => Fill(order, epoch, startBatch, buffers[startBatch % 2]));
        for (int b = startBatch; b < count; b++)
        {
            pending.Wait();
            var ready = buffers[b % 2];
            if (b + 1 < count)
            {
                int next = b + 1;
                pending = Task.Run(() => Fill(order, epoch, next, buffers[next % 2]));
            }
            yield return ready;
        }
    }

    private HostBatch NewBatch() => new(batchSize, data.Channels, data.Height, data.Width);

    /// <summary>Fills <paramref name="into"/> with batch <paramref name="batch"/> of the given epoch order.</summary>
    public void Fill(int[] order, int epoch, int batch, HostBatch into)
    {
        int start = batch * batchSize,
            n = Math.Min(batchSize, data.Count - start);
        var rng = augment.Any ? new Random(Seeds.Derive(seed, epoch, batch, 0xA6)) : null;
        into.Count = n;
        int plane = data.Height * data.Width,
            per = plane * data.Channels;
        for (int i = 0; i < n; i++)
        {
            int idx = order[start + i];
            into.Labels[i] = data.Labels[idx];
            var (dy, dx, flip) = augment.Draw(rng);
            WriteImage(
                data.Image(idx),
                into.Images.AsSpan(i * per, per),
                data.Height,
                data.Width,
                data.Channels,
                dy,
                dx,
                flip
            );
        }
    }

    /// <summary>
    /// HWC bytes -> CHW floats in [0,1], shifted by (dy, dx) with zero fill (equivalent to pad-then-crop), optionally
    /// mirrored.
    /// </summary>
    internal static void WriteImage(
        ReadOnlySpan<byte> hwc,
        Span<float> chw,
        int h,
        int w,
        int c,
        int dy,
        int dx,
        bool flip
    )
    {
        if (dy != 0 || dx != 0)
            chw.Clear();
        for (int y = 0; y < h; y++)
        {
            int sy = y + dy;
            if ((uint)sy >= (uint)h)
                continue;
            for (int x = 0; x < w; x++)
            {
                int sx = (flip ? w - 1 - x : x) + dx;
                if ((uint)sx >= (uint)w)
                    continue;
                int src = (sy * w + sx) * c,
                    dst = y * w + x;
                for (int ch = 0; ch < c; ch++)
                    chw[ch * h * w + dst] = ByteToUnit[hwc[src + ch]];
            }
        }
    }
}
