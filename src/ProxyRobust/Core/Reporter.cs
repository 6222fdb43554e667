namespace ProxyRobust.Core;

/// <summary>
/// An <see cref="IProgress{T}"/> that calls its handler at once, on the reporting thread, in order (the framework's
/// Progress&lt;T&gt; posts to the thread pool, so reports can arrive late and out of order).
/// </summary>
public sealed class Reporter<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}

public static class ProgressPhases
{
    /// <summary>Reports (done, total) of one named phase to a progress that takes (phase, done, total); null stays
    /// null.</summary>
    public static IProgress<(int Done, int Total)>? Phase(
        this IProgress<(string Phase, int Done, int Total)>? progress,
        string phase
    ) => progress is null ? null : new Reporter<(int Done, int Total)>(p => progress.Report((phase, p.Done, p.Total)));
}
