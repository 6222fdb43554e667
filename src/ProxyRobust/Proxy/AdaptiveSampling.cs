using System.Globalization;

namespace ProxyRobust.Proxy;

public enum SelectionKind
{
    /// <summary>Draw with probability proportional to the (non-negative) score.</summary>
    Proportional,

    /// <summary>Draw uniformly from the best-scoring fraction of the store.</summary>
    Top,

    /// <summary>Draw with probability proportional to exp(score / temperature).</summary>
    Tempered,

    /// <summary>Draw uniformly from a random fraction of the store (no scores): the control of <see cref="Top"/>, the
    /// same number of images chosen without looking at them.</summary>
    Random,
}

/// <summary>How per-image scores (e.g. how real a robust discriminator finds an image) become sampling weights:
/// "proportional", "top:F" (the best fraction F, 0 &lt; F &lt;= 1), "temperature:T" (T &gt; 0) or "random:F" (a random
/// fraction F, scores unused).</summary>
public sealed record SampleSelection(SelectionKind Kind, double Value = 0)
{
    public static readonly SampleSelection Proportional = new(SelectionKind.Proportional);

    public static SampleSelection Parse(string text)
    {
        var parts = text.Split(':', 2);
        double Number()
        {
            if (
                parts.Length != 2
                || !double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
            )
                throw new ArgumentException($"'{text}': expected proportional, top:F, temperature:T or random:F");
            return v;
        }
        var selection = parts[0].ToLowerInvariant() switch
        {
            "proportional" when parts.Length == 1 => Proportional,
            "top" => new SampleSelection(SelectionKind.Top, Number()),
            "temperature" => new SampleSelection(SelectionKind.Tempered, Number()),
            "random" => new SampleSelection(SelectionKind.Random, Number()),
            _ => throw new ArgumentException($"'{text}': expected proportional, top:F, temperature:T or random:F"),
        };
        selection.Validate();
        return selection;
    }

    public void Validate()
    {
        if (Kind is SelectionKind.Top or SelectionKind.Random && !(Value > 0 && Value <= 1))
            throw new ArgumentException($"{this}: the fraction must lie in (0, 1]");
        if (Kind == SelectionKind.Tempered && !(Value > 0 && double.IsFinite(Value)))
            throw new ArgumentException($"temperature:{Value}: the temperature must be positive");
    }

    public override string ToString() =>
        Kind switch
        {
            SelectionKind.Top => $"top:{Value.ToString(CultureInfo.InvariantCulture)}",
            SelectionKind.Tempered => $"temperature:{Value.ToString(CultureInfo.InvariantCulture)}",
            SelectionKind.Random => $"random:{Value.ToString(CultureInfo.InvariantCulture)}",
            _ => "proportional",
        };
}

/// <summary>Adaptive sampling (Sehwag et al. 2022, section 4): synthetic images are drawn by weights made from their
/// scores.</summary>
public static class AdaptiveSampling
{
    public static float[] Weights(float[] scores, SampleSelection selection)
    {
        selection.Validate();
        if (scores.Length == 0)
            return [];
        foreach (var s in scores)
            if (!float.IsFinite(s))
                throw new ArgumentException($"score {s} is not finite");
        return selection.Kind switch
        {
            SelectionKind.Top => TopFraction(scores, selection.Value),
            SelectionKind.Tempered => Tempered(scores, selection.Value),
            SelectionKind.Random => throw new ArgumentException($"{selection} takes no scores: use RandomFraction"),
            _ => scores,
        };
    }

    /// <summary>Weight 1 for ceil(F N) images drawn without replacement by <paramref name="seed"/>, 0 for the
    /// rest.</summary>
    public static float[] RandomFraction(int count, double fraction, int seed)
    {
        new SampleSelection(SelectionKind.Random, fraction).Validate();
        int keep = (int)Math.Ceiling(fraction * count);
        var order = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(order);
        var weights = new float[count];
        foreach (var i in order.Take(keep))
            weights[i] = 1;
        return weights;
    }

    /// <summary>Weight 1 for the best ceil(F N) scores, 0 for the rest; equal scores in index order, so the selection
    /// is deterministic.</summary>
    private static float[] TopFraction(float[] scores, double fraction)
    {
        int keep = (int)Math.Ceiling(fraction * scores.Length);
        var order = Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i);
        var weights = new float[scores.Length];
        foreach (var i in order.Take(keep))
            weights[i] = 1;
        return weights;
    }

    /// <summary>exp((s - max) / T): shifted by the maximum so that exp never overflows; the ratios are those of
    /// exp(s / T).</summary>
    private static float[] Tempered(float[] scores, double temperature)
    {
        float max = scores.Max();
        return scores.Select(s => (float)Math.Exp((s - max) / temperature)).ToArray();
    }
}
