using System.Buffers.Binary;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>What to sample into a store: how many images, their labels' class count, chunk size, seed, guidance, the
/// sampler, and which shard of the chunks this process writes.</summary>
public sealed record StorePlan(
    long Count,
    int NumClasses,
    int Height,
    int Width,
    int Channels,
    int ChunkSize = 1000,
    int Seed = 0,
    double Guidance = 1,
    SamplerOptions? Sampler = null,
    int ShardIndex = 0,
    int ShardCount = 1
)
{
    public SamplerOptions SamplerOrDefault => Sampler ?? new SamplerOptions();
    public long Chunks => (Count + ChunkSize - 1) / ChunkSize;

    /// <summary>Class-balanced labels: image i has class i mod K.</summary>
    public long LabelOf(long i) => i % NumClasses;

    public void Validate()
    {
        if (Count < 1)
            throw new ArgumentException("a store needs at least one image");
        if (ChunkSize < 1)
            throw new ArgumentException("the chunk size must be positive");
        if (ShardCount < 1 || ShardIndex < 0 || ShardIndex >= ShardCount)
            throw new ArgumentException($"shard {ShardIndex}/{ShardCount} does not exist");
    }
}

/// <summary>
/// Fills a synthetic store (STORE.npy, uint8 N x H x W x C, + STORE.labels.npy, int64) from a generator, in chunks.
/// Chunk c holds images [c K, (c+1) K) and is drawn from noise seeded by (seed, c) alone, so the store depends on the
/// seed and never on how the work was split: each chunk is written atomically to STORE.parts/ as it finishes, a killed
/// run continues with the chunks still missing (no duplicate, no hole), shard i of n writes the chunks c with c mod n =
/// i, and when every chunk is there the parts are merged, in order, into the store. The plan is kept in
/// STORE.parts/plan.json; a run with another plan is refused.
/// </summary>
public static class StoreWriter
{
    /// <summary>A source of images: labels in, images in [0,1] (N x C x H x W) out, with its own random
    /// stream.</summary>
    public delegate Tensor Source(Tensor labels, Generator generator);

    public static string PartsDir(string store) => Path.ChangeExtension(store, null) + ".parts";

    public static string LabelsPath(string store) => Path.ChangeExtension(store, null) + ".labels.npy";

    private static string ChunkPath(string store, long c) => Path.Combine(PartsDir(store), $"chunk-{c:D6}.npy");

    /// <summary>Writes this shard's missing chunks, then merges if all are present. Returns (chunks written now,
    /// whether the store is complete).</summary>
    public static (int Written, bool Complete) Fill(
        string store,
        StorePlan plan,
        JsonObject generatorDescription,
        Source source,
        int batchSize,
        IProgress<(long Done, long Total)>? progress = null,
        CancellationToken cancel = default,
        IRanks? ranks = null
    )
    {
        // A job of several ranks: each is one shard; rank 0 writes the plan before the others check it, and merges
        // once every rank has written its chunks.
        var job = ranks ?? SingleProcess.Instance;
        plan.Validate();
        var parts = PartsDir(store);
        if (job.IsRoot)
            Directory.CreateDirectory(parts);
        var planPath = Path.Combine(parts, "plan.json");
        var planRecord = new JsonObject
        {
            ["plan"] = JsonFiles.ToNode(plan with { ShardIndex = 0, ShardCount = 1 }),
            ["generator"] = generatorDescription.DeepClone(),
        };
        if (!job.IsRoot)
            job.Barrier();
        if (File.Exists(planPath))
        {
            var saved = JsonFiles.ReadObject(planPath);
            saved.Remove("schemaVersion");
            if (saved.ToJsonString() != planRecord.ToJsonString())
                throw new DataFormatException(
                    planPath,
                    "holds a store planned with another generator, count, chunk size, seed or sampler; "
                        + "use another output"
                );
        }
        else
            JsonFiles.WriteObject(planPath, planRecord);
        if (job.IsRoot && job.Size > 1)
            job.Barrier(); // the plan is there: the other ranks may check it

        var mine = Enumerable.Range(0, (int)plan.Chunks).Where(c => c % plan.ShardCount == plan.ShardIndex).ToList();
        long total = mine.Sum(c => ChunkLength(plan, c));
        long done = mine.Where(c => File.Exists(ChunkPath(store, c))).Sum(c => ChunkLength(plan, c));
        progress?.Report((done, total));
        int written = 0;
        foreach (int c in mine)
        {
            if (File.Exists(ChunkPath(store, c)))
                continue;
            cancel.ThrowIfCancellationRequested();
            WriteChunk(store, plan, c, source, batchSize, cancel);
            written++;
            done += ChunkLength(plan, c);
            progress?.Report((done, total));
        }
        job.Barrier(); // every rank's chunks are written
        bool complete = Enumerable.Range(0, (int)plan.Chunks).All(c => File.Exists(ChunkPath(store, c)));
        if (complete && job.IsRoot)
            Merge(store, plan);
        job.Barrier(); // the store is merged before any rank reports it
        return (written, complete);
    }

    private static long ChunkLength(StorePlan plan, long c) =>
        Math.Min(plan.ChunkSize, plan.Count - c * plan.ChunkSize);

    private static void WriteChunk(
        string store,
        StorePlan plan,
        long c,
        Source source,
        int batchSize,
        CancellationToken cancel
    )
    {
        long start = c * plan.ChunkSize,
            n = ChunkLength(plan, c);
        long pixels = (long)plan.Height * plan.Width * plan.Channels;
        var bytes = new byte[n * pixels];
        using var generator = new Generator((ulong)Seeds.Derive(plan.Seed, c, 0x5703E));
        for (long b = 0; b < n; b += batchSize)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            long m = Math.Min(batchSize, n - b);
            var labels = arange(start + b, start + b + m, dtype: ScalarType.Int64).remainder(plan.NumClasses);
            var images = source(labels, generator);
            // [0,1] float NCHW -> uint8 NHWC, rounding to the nearest level
            var u8 = images.mul(255).round().clamp(0, 255).to(ScalarType.Byte).permute(0, 2, 3, 1).contiguous().cpu();
            u8.data<byte>().CopyTo(bytes, checked((int)(b * pixels)));
        }
        Npy.Write(ChunkPath(store, c), "|u1", [n, plan.Height, plan.Width, plan.Channels], bytes);
    }

    /// <summary>Concatenates the chunks, in order, into the store and writes the labels (each file
    /// atomically).</summary>
    public static void Merge(string store, StorePlan plan)
    {
        long pixels = (long)plan.Height * plan.Width * plan.Channels;
        AtomicFile.Write(
            store,
            s =>
            {
                Npy.WriteTo(s, "|u1", [plan.Count, plan.Height, plan.Width, plan.Channels], ReadOnlySpan<byte>.Empty);
                for (long c = 0; c < plan.Chunks; c++)
                {
                    var path = ChunkPath(store, c);
                    var h = Npy.ReadHeader(path);
                    long n = ChunkLength(plan, c);
                    if (h.ElementCount != n * pixels || Npy.Kind(h) != "u1")
                        throw new DataFormatException(
                            path,
                            $"holds {h.ElementCount} values, expected {n * pixels} bytes"
                        );
                    using var fs = File.OpenRead(path);
                    fs.Position = h.DataOffset;
                    fs.CopyTo(s);
                }
            }
        );
        var labels = new byte[plan.Count * 8];
        for (long i = 0; i < plan.Count; i++)
            BinaryPrimitives.WriteInt64LittleEndian(labels.AsSpan((int)(8 * i)), plan.LabelOf(i));
        Npy.Write(LabelsPath(store), "<i8", [plan.Count], labels);
    }
}
