using System.Globalization;
using System.Text.RegularExpressions;
using ProxyRobust.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Models;

/// <summary>
/// Everything needed to rebuild a classifier: architecture name ("small-cnn", "preact-resnet18", "wrn-D-K"),
/// input shape, class count, and the per-channel normalisation applied inside the model (so that attacks
/// work in [0,1] pixel space).
/// </summary>
public sealed partial record ArchSpec(
    string Name,
    int InChannels,
    int Height,
    int Width,
    int NumClasses,
    float[] Mean,
    float[] Std
)
{
    public static readonly string[] KnownNames =
    [
        "small-cnn",
        "preact-resnet18",
        "wrn-D-K (e.g. wrn-16-4, wrn-28-10, wrn-34-10)",
    ];

    public static ArchSpec For(
        string name,
        int channels,
        int height,
        int width,
        int numClasses,
        float[]? mean = null,
        float[]? std = null
    )
    {
        var spec = new ArchSpec(
            name.ToLowerInvariant(),
            channels,
            height,
            width,
            numClasses,
            mean ?? Enumerable.Repeat(0f, channels).ToArray(),
            std ?? Enumerable.Repeat(1f, channels).ToArray()
        );
        spec.Validate();
        return spec;
    }

    public void Validate()
    {
        if (Name != "small-cnn" && Name != "preact-resnet18" && WrnRegex().Match(Name) is not { Success: true })
            throw new ArgumentException($"unknown architecture '{Name}'; known: {string.Join(", ", KnownNames)}");
        if (
            WrnRegex().Match(Name) is { Success: true } m
            && (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) - 4) % 6 != 0
        )
            throw new ArgumentException($"WideResNet depth must be 6n+4 (e.g. 16, 28, 34), got '{Name}'");
        if (Mean.Length != InChannels || Std.Length != InChannels || Std.Any(s => !(s > 0)))
            throw new ArgumentException($"normalisation needs {InChannels} means and {InChannels} positive stds");
        if (NumClasses < 2)
            throw new ArgumentException("a classifier needs at least 2 classes");
    }

    public (int Depth, int Widen)? Wrn() =>
        WrnRegex().Match(Name) is { Success: true } m
            ? (
                int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture),
                int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)
            )
            : null;

    /// <summary>Builds the model with freshly initialised weights (seed torch first for reproducibility).</summary>
    public Classifier Create()
    {
        Validate();
        nn.Module<Tensor, Tensor> body = Name switch
        {
            "small-cnn" => new SmallCnn(InChannels, Height, Width, NumClasses),
            "preact-resnet18" => new PreActResNet18(InChannels, NumClasses),
            _ => new WideResNet(Wrn()!.Value.Depth, Wrn()!.Value.Widen, InChannels, NumClasses),
        };
        // The small CNN is faster with NCHW convolutions (its first has one input channel); it pools channels-last
        // itself.
        return new Classifier(this, body, channelsLast: Name != "small-cnn");
    }

    public bool Equals(ArchSpec? other) =>
        other is not null
        && Name == other.Name
        && InChannels == other.InChannels
        && Height == other.Height
        && Width == other.Width
        && NumClasses == other.NumClasses
        && Mean.SequenceEqual(other.Mean)
        && Std.SequenceEqual(other.Std);

    public override int GetHashCode() => HashCode.Combine(Name, InChannels, Height, Width, NumClasses);

    /// <summary>
    /// Throws a <see cref="DataFormatException"/> naming the data (<paramref name="source"/>) when its images
    /// or classes do not fit this model. (Models never read data sets: callers pass the data's shape.)
    /// </summary>
    public void CheckAccepts(string source, int channels, int height, int width, int numClasses)
    {
        if ((channels, height, width) != (InChannels, Height, Width))
            throw new DataFormatException(
                source,
                $"images are {channels}x{height}x{width}, the model expects {InChannels}x{Height}x{Width}"
            );
        if (numClasses > NumClasses)
            throw new DataFormatException(source, $"{numClasses} classes, the model has {NumClasses}");
    }

    public override string ToString() => $"{Name} ({InChannels}x{Height}x{Width} -> {NumClasses} classes)";

    [GeneratedRegex(@"^wrn-(\d+)-(\d+)$")]
    private static partial Regex WrnRegex();
}
