using ProxyRobust.Core;

namespace ProxyRobust.Data;

/// <summary>
/// A labelled image data set: uint8 images in NHWC order (in memory or memory-mapped), one label per image.
/// Every reader returns this, so everything downstream is format-agnostic.
/// </summary>
public sealed class ImageDataset : IDisposable
{
    private readonly IImageStore _store;
    private readonly long[]? _subset;

    public string Source { get; }
    public int Height { get; }
    public int Width { get; }
    public int Channels { get; }
    public IReadOnlyList<string> ClassNames { get; }
    public int[] Labels { get; }
    public int Count => Labels.Length;
    public int NumClasses => ClassNames.Count;
    public int ImageBytes => Height * Width * Channels;

    public ImageDataset(
        string source,
        IImageStore store,
        int[] labels,
        int height,
        int width,
        int channels,
        IReadOnlyList<string> classNames
    )
        : this(source, store, labels, height, width, channels, classNames, null) { }

    private ImageDataset(
        string source,
        IImageStore store,
        int[] labels,
        int height,
        int width,
        int channels,
        IReadOnlyList<string> classNames,
        long[]? subset
    )
    {
        if (height <= 0 || width <= 0 || channels <= 0)
            throw new DataFormatException(source, $"image shape {height}x{width}x{channels} is not positive");
        if (store.ImageBytes != height * width * channels)
            throw new DataFormatException(
                source,
                $"stored image size {store.ImageBytes} bytes does not match {height}x{width}x{channels}"
            );
        if (subset is null && store.Count != labels.Length)
            throw new DataFormatException(source, $"{store.Count} images but {labels.Length} labels");
        for (int i = 0; i < labels.Length; i++)
            if ((uint)labels[i] >= (uint)classNames.Count)
                throw new DataFormatException(
                    source,
                    $"label {labels[i]} at index {i} is outside 0..{classNames.Count - 1}"
                );
        Source = source;
        _store = store;
        Labels = labels;
        Height = height;
        Width = width;
        Channels = channels;
        ClassNames = classNames;
        _subset = subset;
    }

    /// <summary>The HWC bytes of image <paramref name="index"/>.</summary>
    public ReadOnlySpan<byte> Image(int index) => _store.Image(_subset is null ? index : _subset[index]);

    /// <summary>A view on some of the images (shares storage; disposing the view does not close it).</summary>
    public ImageDataset Select(IReadOnlyList<int> indices, string? source = null)
    {
        var map = new long[indices.Count];
        var labels = new int[indices.Count];
        for (int i = 0; i < map.Length; i++)
        {
            map[i] = _subset is null ? indices[i] : _subset[indices[i]];
            labels[i] = Labels[indices[i]];
        }
        return new ImageDataset(
            source ?? Source,
            new BorrowedStore(_store),
            labels,
            Height,
            Width,
            Channels,
            ClassNames,
            map
        );
    }

    /// <summary>Splits off a seeded, class-stratified random part: (first count images, the rest).</summary>
    public (ImageDataset Taken, ImageDataset Remainder) Split(int count, int seed)
    {
        if (count < 0 || count > Count)
            throw new ArgumentOutOfRangeException(nameof(count), $"cannot take {count} of {Count} images");
        var order = Enumerable.Range(0, Count).ToArray();
        new Random(seed).Shuffle(order);
        // Stratify: round-robin over classes in the shuffled order, so small subsets stay balanced.
        var byClass = order.GroupBy(i => Labels[i]).OrderBy(g => g.Key).Select(g => new Queue<int>(g)).ToList();
        var taken = new List<int>(count);
        while (taken.Count < count)
            foreach (var q in byClass)
                if (taken.Count < count && q.Count > 0)
                    taken.Add(q.Dequeue());
        var takenSet = new HashSet<int>(taken);
        var rest = order.Where(i => !takenSet.Contains(i)).ToList();
        taken.Sort();
        rest.Sort();
        return (Select(taken), Select(rest));
    }

    /// <summary>
    /// Up to <paramref name="perClass"/> randomly chosen images of every class (one list per class, in class
    /// order), e.g. for a sample grid.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<byte[]>> SamplesPerClass(int perClass, int seed = 0)
    {
        var byClass = Enumerable.Range(0, Count).GroupBy(i => Labels[i]).ToDictionary(g => g.Key, g => g.ToArray());
        var rng = new Random(seed);
        return Enumerable
            .Range(0, NumClasses)
            .Select(c =>
                (IReadOnlyList<byte[]>)(
                    byClass.TryGetValue(c, out var members)
                        ? Enumerable
                            .Range(0, Math.Min(perClass, members.Length))
                            .Select(_ => Image(members[rng.Next(members.Length)]).ToArray())
                            .ToList()
                        : []
                )
            )
            .ToList();
    }

    public int[] ClassCounts()
    {
        var counts = new int[NumClasses];
        foreach (var l in Labels)
            counts[l]++;
        return counts;
    }

    public void Dispose() => _store.Dispose();

    private sealed class BorrowedStore(IImageStore inner) : IImageStore
    {
        public long Count => inner.Count;
        public int ImageBytes => inner.ImageBytes;

        public ReadOnlySpan<byte> Image(long index) => inner.Image(index);

        public void Dispose() { }
    }
}
