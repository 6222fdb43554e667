using ProxyRobust.Core;

namespace ProxyRobust.Data;

/// <summary>
/// The proxy-data side of a PORT batch: <c>batchSize</c> synthetic images per training step, drawn independently of the
/// real stream. Without scores it walks seeded random permutations of the whole store (every image once per pass);
/// with per-sample scores it draws with probability proportional to the score (adaptive sampling). Batch k depends only
/// on (seed, k), so a resumed run draws what an uninterrupted one would. The store is memory-mapped: 10 million
/// images stream with flat memory.
/// </summary>
public sealed class SyntheticStream
{
    private readonly ImageDataset _data;
    private readonly int _batchSize;
    private readonly AugmentOptions _augment;
    private readonly int _seed;
    private readonly double[]? _cumulative;
    private int[]? _order;
    private long _orderPass = -1;

    public SyntheticStream(ImageDataset data, int batchSize, AugmentOptions augment, int seed, float[]? scores = null)
    {
        if (data.Count == 0)
            throw new DataFormatException(data.Source, "the synthetic store holds no images");
        _data = data;
        _batchSize = batchSize;
        _augment = augment;
        _seed = seed;
        if (scores is not null)
        {
            if (scores.Length != data.Count)
                throw new DataFormatException(data.Source, $"{scores.Length} scores for {data.Count} synthetic images");
            _cumulative = new double[scores.Length];
            double sum = 0;
            for (int i = 0; i < scores.Length; i++)
            {
                if (!(scores[i] >= 0) || float.IsInfinity(scores[i]))
                    throw new DataFormatException(
                        data.Source,
                        $"score {scores[i]} at index {i} is not a finite non-negative number"
                    );
                sum += scores[i];
                _cumulative[i] = sum;
            }
            if (!(sum > 0))
                throw new DataFormatException(data.Source, "all sampling scores are zero");
        }
    }

    public ImageDataset Data => _data;
    public int BatchSize => _batchSize;

    public HostBatch NewBatch() => new(_batchSize, _data.Channels, _data.Height, _data.Width);

    /// <summary>The store indices of synthetic batch <paramref name="step"/>.</summary>
    public int[] Indices(long step)
    {
        var idx = new int[_batchSize];
        if (_cumulative is not null)
        {
            var rng = new Random(Seeds.Derive(_seed, step, 0x5C0));
            double total = _cumulative[^1];
            for (int i = 0; i < idx.Length; i++)
            {
                int k = Array.BinarySearch(_cumulative, rng.NextDouble() * total);
                idx[i] = Math.Min(k < 0 ? ~k : k, _cumulative.Length - 1);
            }
            return idx;
        }
        long n = _data.Count;
        for (int i = 0; i < idx.Length; i++)
        {
            long pos = step * _batchSize + i;
            long pass = pos / n;
            if (pass != _orderPass)
            {
                _order ??= new int[n];
                for (int j = 0; j < n; j++)
                    _order[j] = j;
                new Random(Seeds.Derive(_seed, pass, 0x5A5)).Shuffle(_order);
                _orderPass = pass;
            }
            idx[i] = _order![pos % n];
        }
        return idx;
    }

    public void Fill(long step, HostBatch into)
    {
        var idx = Indices(step);
        var rng = _augment.Any ? new Random(Seeds.Derive(_seed, step, 0xA7)) : null;
        int per = _data.Channels * _data.Height * _data.Width;
        into.Count = idx.Length;
        for (int i = 0; i < idx.Length; i++)
        {
            into.Labels[i] = _data.Labels[idx[i]];
            var (dy, dx, flip) = _augment.Draw(rng);
            BatchSampler.WriteImage(
                _data.Image(idx[i]),
                into.Images.AsSpan(i * per, per),
                _data.Height,
                _data.Width,
                _data.Channels,
                dy,
                dx,
                flip
            );
        }
    }
}
