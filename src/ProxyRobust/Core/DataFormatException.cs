namespace ProxyRobust.Core;

/// <summary>A file that cannot be used (data, a results file, a log). The message always starts with the file's path
/// and says what is wrong.</summary>
public sealed class DataFormatException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner)
{
    public string FilePath { get; } = path;
    public string Problem { get; } = problem;
}
