using ProxyRobust.Core;

namespace ProxyRobust.Data;

/// <summary>
/// The classes of a labelled file. Declared (names from the format, else a count) labels must lie below their
/// number. Inferred (neither given), the classes are 0..max label and every one of them must occur: a class without a
/// single image almost always means a wrong label (an 11 in a 10-class set), so it is an error unless the count is
/// declared.
/// </summary>
public static class ClassNames
{
    public static IReadOnlyList<string> For(int[] labels, string labelsPath, IReadOnlyList<string>? names, int? count)
    {
        int max = labels.Length == 0 ? 0 : labels.Max();
        int min = labels.Length == 0 ? 0 : labels.Min();
        if (min < 0)
            throw new DataFormatException(labelsPath, $"label {min} at index {Array.IndexOf(labels, min)} is negative");
        var known = names ?? (count is { } n ? Numbered(n) : null);
        if (known is not null)
        {
            if (max >= known.Count)
                throw new DataFormatException(
                    labelsPath,
                    $"label {max} at index {Array.IndexOf(labels, max)} is outside 0..{known.Count - 1} "
                        + $"({known.Count} classes)"
                );
            return known;
        }
        var seen = new bool[max + 1];
        foreach (var l in labels)
            seen[l] = true;
        var missing = Enumerable.Range(0, max + 1).Where(c => !seen[c]).ToList();
        if (missing.Count > 0)
            throw new DataFormatException(
                labelsPath,
                $"labels run up to {max} (at index {Array.IndexOf(labels, max)}) but class(es) "
                    + $"{string.Join(", ", missing.Take(10))} have no image: a wrong label? If the data set really has "
                    + $"{max + 1} classes, declare that number of classes"
            );
        return Numbered(Math.Max(2, max + 1));
    }

    private static string[] Numbered(int count) => Enumerable.Range(0, count).Select(i => i.ToString()).ToArray();
}
