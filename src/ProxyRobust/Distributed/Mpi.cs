using System.Runtime.InteropServices;
using ProxyRobust.Core;

namespace ProxyRobust.Distributed;

/// <summary>
/// MPI through MPI.NET, over any MPICH-ABI library (Debian's mpich; Intel MPI, Cray MPICH and MVAPICH share the ABI).
/// MPI.NET is built against MS-MPI, whose ABI is MPICH's: its imports of <c>msmpi</c> are resolved to
/// <c>libmpich.so.12</c>. A process not started by mpiexec never loads MPI (<see cref="Start"/> returns
/// <see cref="SingleProcess"/>), so a single-process run needs no MPI installed.
/// </summary>
public static class Mpi
{
    private static int resolverSet;

    /// <summary>The library name MPICH-ABI implementations install (overridable for other sonames).</summary>
    public static string Library => Environment.GetEnvironmentVariable("PROXYROBUST_MPI_LIBRARY") ?? "libmpich.so.12";

    /// <summary>True when an MPICH-ABI launcher (Hydra's mpiexec, or Slurm's srun with PMI) started this process as
    /// one of more than one rank.</summary>
    public static bool Launched =>
        int.TryParse(Environment.GetEnvironmentVariable("PMI_SIZE"), out int size) && size > 1;

    /// <summary>
    /// The job this process belongs to: <see cref="SingleProcess"/> when not launched by mpiexec (or launched as a
    /// job of one), else this rank of the MPI world. Open MPI's launcher gets a one-line explanation instead: its ABI
    /// differs and MPI.NET cannot call it.
    /// </summary>
    public static IRanks Start()
    {
        if (Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is { } ompi && ompi != "1")
            throw new PlatformNotSupportedException(
                "started by Open MPI's mpirun, whose ABI MPI.NET cannot call: use an MPICH-ABI MPI (Debian: apt-get "
                    + "install mpich, then mpiexec.mpich -np N proxyrobust ...)"
            );
        if (!Launched)
            return SingleProcess.Instance;
        return World ??= MpiRanks.Create();
    }

    /// <summary>This process's MPI world once <see cref="Start"/> created it.</summary>
    public static MpiRanks? World { get; private set; }

    /// <summary>
    /// Ends the process's part in the job with <paramref name="exitCode"/>: MPI_Finalize when it succeeded or every
    /// rank stopped together (130, interrupted), else MPI_Abort, which ends every rank at once: a rank that failed
    /// alone would otherwise leave the others waiting for it in a collective forever.
    /// </summary>
    public static int End(int exitCode)
    {
        if (World is not { } world)
            return exitCode;
        World = null;
        if (exitCode is 0 or 130)
            world.Dispose();
        else
            world.Abort(exitCode);
        return exitCode;
    }

    internal static void UseMpich()
    {
        if (Interlocked.Exchange(ref resolverSet, 1) == 1)
            return;
        NativeLibrary.SetDllImportResolver(
            typeof(MPI.Environment).Assembly,
            (name, _, _) =>
            {
                if (!name.StartsWith("msmpi", StringComparison.OrdinalIgnoreCase))
                    return IntPtr.Zero;
                if (NativeLibrary.TryLoad(Library, out var handle))
                    return handle;
                throw new DllNotFoundException(
                    $"{Library} not found: MPI runs need an MPICH-ABI library (Debian: apt-get install mpich)"
                );
            }
        );
    }
}

/// <summary>This rank of MPI_COMM_WORLD. Sums of native buffers go straight to MPI_Allreduce in place (no copy into
/// managed arrays); dispose once at the end of the process (MPI_Finalize).</summary>
public sealed class MpiRanks : IRanks, IDisposable
{
    // MPICH ABI: MPI_IN_PLACE is (void*)-1
    private static readonly IntPtr InPlace = new(-1);
    private readonly MPI.Environment environment;
    private readonly MPI.Intracommunicator world;

    private MpiRanks(MPI.Environment environment)
    {
        this.environment = environment;
        world = MPI.Communicator.world;
    }

    internal static MpiRanks Create()
    {
        Mpi.UseMpich();
        string[] args = [];
        return new MpiRanks(new MPI.Environment(ref args, MPI.Threading.Serialized));
    }

    public int Rank => world.Rank;
    public int Size => world.Size;

    public void SumInPlace(IntPtr buffer, int count) =>
        Check(MPI.Unsafe.MPI_Allreduce(InPlace, buffer, count, MPI.Unsafe.MPI_FLOAT, MPI.Unsafe.MPI_SUM, World));

    public unsafe void SumInPlace(double[] values)
    {
        fixed (double* p = values)
            Check(
                MPI.Unsafe.MPI_Allreduce(
                    InPlace,
                    (IntPtr)p,
                    values.Length,
                    MPI.Unsafe.MPI_DOUBLE,
                    MPI.Unsafe.MPI_SUM,
                    World
                )
            );
    }

    public unsafe byte[][]? GatherToRoot(byte[] local)
    {
        // lengths first, then the bytes in one MPI_Gatherv (MPI.NET's generic Gather would serialise)
        var lengths = new int[Size];
        int mine = local.Length;
        fixed (int* l = lengths)
            Check(
                MPI.Unsafe.MPI_Gather(
                    (IntPtr)(&mine),
                    1,
                    MPI.Unsafe.MPI_INT,
                    (IntPtr)l,
                    1,
                    MPI.Unsafe.MPI_INT,
                    0,
                    World
                )
            );
        var offsets = new int[Size];
        for (int i = 1; i < Size; i++)
            offsets[i] = checked(offsets[i - 1] + lengths[i - 1]);
        var all = new byte[Rank == 0 ? offsets[^1] + lengths[^1] : 0];
        fixed (byte* send = local)
        fixed (byte* receive = all)
            Check(
                MPI.Unsafe.MPI_Gatherv(
                    (IntPtr)send,
                    mine,
                    MPI.Unsafe.MPI_BYTE,
                    (IntPtr)receive,
                    lengths,
                    offsets,
                    MPI.Unsafe.MPI_BYTE,
                    0,
                    World
                )
            );
        return Rank == 0
            ? [.. Enumerable.Range(0, Size).Select(i => all.AsSpan(offsets[i], lengths[i]).ToArray())]
            : null;
    }

    /// <summary>Ends the whole job at once (every rank), e.g. when one rank failed where the others would wait for
    /// it forever.</summary>
    public void Abort(int code) => world.Abort(code);

    private static int World => MPI.Unsafe.MPI_COMM_WORLD;

    private static void Check(int code)
    {
        if (code != 0)
            throw new InvalidOperationException($"MPI call failed with error code {code}");
    }

    public void Dispose() => environment.Dispose();
}
