using ProxyRobust.Core;
using ProxyRobust.Native;
using ProxyRobust.Training;

namespace ProxyRobust.Cli;

public static class ExitCodes
{
    public const int Ok = 0,
        Failure = 1,
        Usage = 2,
        Interrupted = 130;

    /// <summary>
    /// Runs a verb; known failures become one line on stderr and exit code 1, settings the library rejects
    /// exit 2 (usage), an interruption 130. Never a stack trace.
    /// </summary>
    public static int Guard(Func<int> verb)
    {
        try
        {
            return verb();
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Usage;
        }
        catch (DataFormatException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
        catch (CheckpointException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
        catch (NativeLoadException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: state saved; run the same command with --resume to continue");
            return Interrupted;
        }
        // The library describes settings it cannot use with ArgumentException (e.g. a subset larger than the data).
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Usage;
        }
        catch (Exception e)
            when (e
                    is IOException
                        or UnauthorizedAccessException
                        or InvalidOperationException
                        or PlatformNotSupportedException
                        or DllNotFoundException
            )
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
    }
}

/// <summary>Options that parse but do not make sense together.</summary>
public sealed class UsageException(string message) : Exception(message);
