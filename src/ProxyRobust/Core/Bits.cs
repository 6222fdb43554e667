namespace ProxyRobust.Core;

/// <summary>Per-point outcomes as a compact string of 0/1.</summary>
public static class Bits
{
    public static string Of(IEnumerable<bool> hits) => string.Concat(hits.Select(h => h ? '1' : '0'));

    public static bool[] Parse(string? bits) => bits is null ? [] : bits.Select(c => c == '1').ToArray();
}
