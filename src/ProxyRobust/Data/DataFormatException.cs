namespace ProxyRobust.Data;

/// <summary>A data file that cannot be used. The message always starts with the file's path and says what is wrong.</summary>
public sealed class DataFormatException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner)
{
    public string FilePath { get; } = path;
    public string Problem { get; } = problem;
}
