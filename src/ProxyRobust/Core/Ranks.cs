namespace ProxyRobust.Core;

/// <summary>
/// The processes of one job and the few collective operations data-parallel work needs. Training, evaluation and
/// sampling see only this interface; <see cref="SingleProcess"/> is the job of one, and ProxyRobust.Distributed
/// implements it over MPI. Every rank must call every collective in the same order (as in MPI).
/// </summary>
public interface IRanks
{
    /// <summary>This process's index, 0 to <see cref="Size"/> - 1; rank 0 writes files and logs.</summary>
    int Rank { get; }
    int Size { get; }
    bool IsRoot => Rank == 0;

    /// <summary>Replaces <paramref name="count"/> floats at <paramref name="buffer"/> (native memory, such as a
    /// tensor's) by their sum over all ranks.</summary>
    void SumInPlace(IntPtr buffer, int count);

    /// <summary>Replaces the values by their sum over all ranks.</summary>
    void SumInPlace(double[] values);

    /// <summary>Returns when every rank has called it.</summary>
    void Barrier() => SumInPlace(new double[1]);

    /// <summary>Rank 0 receives every rank's bytes in rank order (its own first); the others receive null.</summary>
    byte[][]? GatherToRoot(byte[] local);
}

/// <summary>A job of one process: every collective is the identity.</summary>
public sealed class SingleProcess : IRanks
{
    public static readonly SingleProcess Instance = new();

    public int Rank => 0;
    public int Size => 1;

    public void SumInPlace(IntPtr buffer, int count) { }

    public void SumInPlace(double[] values) { }

    public byte[][]? GatherToRoot(byte[] local) => [local];
}

/// <summary>How a job splits work among its ranks.</summary>
public static class Shards
{
    /// <summary>The rows rank <paramref name="rank"/> of <paramref name="size"/> takes out of <paramref name="n"/>:
    /// every size-th row from its rank on (strided, so that each rank gets real and proxy rows of a PORT batch
    /// alike).</summary>
    public static long[] Strided(long n, int rank, int size)
    {
        var rows = new long[Math.Max(0, (n - rank + size - 1) / size)];
        for (int i = 0; i < rows.Length; i++)
            rows[i] = rank + (long)i * size;
        return rows;
    }

    /// <summary>The contiguous range [start, end) of <paramref name="n"/> items rank <paramref name="rank"/>
    /// takes; the first n % size ranks take one more.</summary>
    public static (long Start, long End) Contiguous(long n, int rank, int size)
    {
        long q = n / size,
            r = n % size;
        long start = rank * q + Math.Min(rank, r);
        return (start, start + q + (rank < r ? 1 : 0));
    }
}
