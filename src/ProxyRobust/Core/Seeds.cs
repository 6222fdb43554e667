namespace ProxyRobust.Core;

/// <summary>Derives independent, reproducible seeds from a run seed and counters (SplitMix64 finaliser).</summary>
public static class Seeds
{
    public static int Derive(long seed, params long[] parts)
    {
        ulong h = Mix((ulong)seed);
        foreach (var p in parts)
            h = Mix(h ^ (ulong)p);
        return (int)(h & 0x7fffffff);
    }

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
