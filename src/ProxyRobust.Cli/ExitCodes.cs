using ProxyRobust.Data;
using ProxyRobust.Native;
using ProxyRobust.Training;
using ProxyRobust.Core;

namespace ProxyRobust.Cli;

public static class ExitCodes
{
    public const int Ok = 0, Failure = 1, Usage = 2;

    /// <summary>Runs a verb; known failures become one line on stderr and exit code 1 (usage errors 2), never a stack trace.</summary>
    public static int Guard(Func<int> verb)
    {
        try
        {
            return verb();
        }
        catch (UsageException e) { Console.Error.WriteLine($"error: {e.Message}"); return Usage; }
        catch (DataFormatException e) { Console.Error.WriteLine($"error: {e.Message}"); return Failure; }
        catch (CheckpointException e) { Console.Error.WriteLine($"error: {e.Message}"); return Failure; }
        catch (NativeLoadException e) { Console.Error.WriteLine($"error: {e.Message}"); return Failure; }
        catch (OperationCanceledException) { Console.Error.WriteLine("interrupted; continue with --resume"); return Failure; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or ArgumentException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
    }
}

/// <summary>Options that parse but do not make sense together.</summary>
public sealed class UsageException(string message) : Exception(message);
