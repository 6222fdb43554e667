using TorchSharp;

namespace ProxyRobust.Native;

/// <summary>Thrown when libtorch cannot be loaded; the message is one sentence a user can act on.</summary>
public sealed class NativeLoadException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// Initialises libtorch once. Before the first native call it patches the libLibTorchSharp.so next to the
/// application if the host needs it (covers copies that no build step touched, e.g. an installed .NET tool).
/// </summary>
public static class TorchRuntime
{
    private static readonly Lazy<OneDnnState> Initialised = new(
        Initialise,
        LazyThreadSafetyMode.ExecutionAndPublication
    );

    public static void EnsureInitialised() => _ = Initialised.Value;

    /// <summary>Whether libtorch's oneDNN kernels are in use in this process (OneDnnGuard says when they are
    /// not).</summary>
    public static OneDnnState OneDnn => Initialised.Value;

    private static OneDnnState Initialise()
    {
        try
        {
            if (!ElfVersionPatcher.HostLibStdCxxHas(ElfVersionPatcher.LibTorchSharpRequiredVersion))
                ElfVersionPatcher.PatchFolderIfHostNeeds(AppContext.BaseDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            // Read-only install: fall through, and let the load below explain what is wrong.
        }

        NativeHeap.KeepFreedMemory();
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
            using var probe = torch.ones(1);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new NativeLoadException(Explain(e, AppContext.BaseDirectory), e);
        }
        var decision = OneDnnGuard.Decide(
            Environment.GetEnvironmentVariable(OneDnnGuard.OverrideVariable),
            OneDnnGuard.CheckThisCpu,
            OneDnnGuard.RepairThisCpu
        );
        if (!decision.Enabled)
            OneDnnGuard.SetEnabled(false);
        return decision;
    }

    /// <summary>One sentence saying why libtorch did not load from <paramref name="folder"/> and what to do.</summary>
    internal static string Explain(Exception e, string folder)
    {
        var all = string.Join(" ", Chain(e).Select(x => x.Message));
        var why = all.Contains("GLIBCXX", StringComparison.Ordinal)
            ? $"this system's libstdc++ lacks {ElfVersionPatcher.LibTorchSharpRequiredVersion} and the copy of "
                + $"libLibTorchSharp.so in {folder} could not be patched (is the folder writable?); rebuild with "
                + $"'dotnet build' or install libstdc++ from GCC 13 or newer"
            : $"libtorch could not be loaded from {folder} ({FirstLine(e)}); run 'dotnet restore' and 'dotnet "
                + $"build' so that the TorchSharp-cpu native libraries are copied next to the program";
        return $"Cannot start libtorch: {why}.";
    }

    private static IEnumerable<Exception> Chain(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            yield return x;
    }

    private static string FirstLine(Exception e)
    {
        var inner = e;
        while (inner.InnerException is not null)
            inner = inner.InnerException;
        return inner.Message.Split('\n')[0].Trim();
    }
}
