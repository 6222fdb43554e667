using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Experiments;

/// <summary>
/// What evaluation and certification start from: a classifier on its device, the data set it must accept, and
/// the points to use (a seeded, class-balanced subset when a count is given).
/// </summary>
public sealed record ModelAndData(Classifier Model, ImageDataset Full, ImageDataset Points) : IDisposable
{
    public static ModelAndData Open(
        string checkpoint,
        bool ema,
        string? data,
        Split split,
        string? labels,
        int? count,
        int seed,
        Device device
    )
    {
        var model = Checkpoint.LoadClassifier(checkpoint, ema);
        model.to(device);
        ImageDataset? full = null;
        try
        {
            // Files that do not name their classes are read as the model's classes (a label beyond them is an error).
            full = DatasetLoader.Load(data, split, labels, model.Spec.NumClasses);
            model.Spec.CheckAccepts(full.Source, full.Channels, full.Height, full.Width, full.NumClasses);
            if (count is < 1)
                throw new ArgumentException($"the number of points must be positive, got {count}");
            var points = count is { } c && c < full.Count ? full.Split(c, seed).Taken : full;
            return new ModelAndData(model, full, points);
        }
        catch
        {
            model.Dispose();
            full?.Dispose();
            throw;
        }
    }

    /// <summary>Writes the points' images as float32 NHWC in [0,1] (the form every other tool takes) and their
    /// labels.</summary>
    public void SavePoints(string path)
    {
        using var scope = NewDisposeScope();
        var (clean, _) = BatchSampler.All(Points, CPU);
        WriteImages(path, clean.permute(0, 2, 3, 1).contiguous().data<float>().ToArray());
    }

    /// <summary>Images of the points (float32 NHWC, e.g. adversarial examples) as PATH, their labels as
    /// PATH.labels.npy.</summary>
    public void WriteImages(string path, float[] nhwc)
    {
        Npy.WriteFloats(path, [Points.Count, Points.Height, Points.Width, Points.Channels], nhwc);
        Npy.WriteLabels(Path.ChangeExtension(path, null) + ".labels.npy", Points.Labels);
    }

    public void Dispose()
    {
        Model.Dispose();
        Full.Dispose();
    }
}
