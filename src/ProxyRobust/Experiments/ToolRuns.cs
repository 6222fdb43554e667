using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Export;
using ProxyRobust.Generative;
using ProxyRobust.Reporting;
using ProxyRobust.Training;
using TorchSharp;

namespace ProxyRobust.Experiments;

// The small verbs, each one library call: export a model, pseudo-label a store, describe a data set.

public enum ExportFormat
{
    Onnx,
    Safetensors,
}

public sealed record ExportRequest(string Checkpoint, ExportFormat Format, string Output, bool Ema = false);

public sealed record ExportOutcome(string Output, long Bytes, string Model);

public static class ExportRun
{
    /// <summary>Writes the model as ONNX (the whole forward pass) or a plain safetensors state dict with its
    /// architecture.</summary>
    public static ExportOutcome Execute(ExportRequest r)
    {
        using var model = Checkpoint.LoadClassifier(r.Checkpoint, r.Ema);
        model.eval();
        var bytes =
            r.Format == ExportFormat.Onnx
                ? ModelExport.ToOnnx(model)
                : ModelExport.ToSafetensors(model, ModelExport.Metadata(model));
        AtomicFile.WriteAllBytes(r.Output, bytes);
        return new ExportOutcome(r.Output, bytes.Length, model.Spec.ToString());
    }
}

/// <summary>Unlabeled images (uint8 NHWC .npy, or a raw .bin of the given shape) and the store to write (null: labels
/// beside them).</summary>
public sealed record LabelRequest(
    string Classifier,
    string Input,
    string? Output,
    (int H, int W, int C) RawShape,
    int BatchSize = 512,
    string Device = "cpu"
);

public sealed record LabelOutcome(
    int Images,
    string LabelsPath,
    string ConfidencePath,
    double MeanConfidence,
    int[] ClassCounts
);

public static class LabelRun
{
    /// <summary>Pseudo-labels the images: STORE.labels.npy and STORE.confidence.npy (and STORE.npy when writing
    /// elsewhere).</summary>
    public static LabelOutcome Execute(LabelRequest r, IProgress<(int Done, int Total)>? progress = null)
    {
        var device = torch.device(r.Device);
        using var model = Checkpoint.LoadClassifier(r.Classifier);
        model.to(device);
        using var images = NpyDataset.ReadUnlabeled(r.Input, r.RawShape);
        var labels = PseudoLabeler.Label(model, images, r.BatchSize, device, progress);
        string stem;
        if (r.Output is null || Path.GetFullPath(r.Output) == Path.GetFullPath(r.Input))
            stem = Path.ChangeExtension(r.Input, null);
        else
        {
            stem = Path.ChangeExtension(r.Output, null);
            NpyDataset.Write(images, stem + ".npy", labelsPath: null);
        }
        Npy.WriteLabels(stem + ".labels.npy", labels.Predicted);
        Npy.WriteFloats(stem + ".confidence.npy", [labels.Confidence.Length], labels.Confidence);
        var counts = new int[model.Spec.NumClasses];
        foreach (var l in labels.Predicted)
            counts[l]++;
        return new LabelOutcome(
            images.Count,
            stem + ".labels.npy",
            stem + ".confidence.npy",
            labels.Confidence.Length == 0 ? 0 : labels.Confidence.Average(),
            counts
        );
    }
}

public sealed record DataInfoRequest(string? Data, Split Split, string? Labels, string Grid, int? Classes = null);

public sealed record DataInfo(
    string Source,
    int Images,
    int Height,
    int Width,
    int Channels,
    IReadOnlyList<string> ClassNames,
    int[] ClassCounts,
    float[] ChannelMean,
    float[] ChannelStd,
    string Grid
);

public static class DataInfoRun
{
    /// <summary>Shape, classes, counts and channel statistics of a data set, and a PNG grid with one row of samples per
    /// class.</summary>
    public static DataInfo Execute(DataInfoRequest r)
    {
        using var ds = DatasetLoader.Load(r.Data, r.Split, r.Labels, r.Classes);
        var (mean, std) = DatasetStats.ChannelMeanStd(ds);
        ImageGrid.WritePng(ds.SamplesPerClass(10), ds.Height, ds.Width, ds.Channels, r.Grid);
        return new DataInfo(
            ds.Source,
            ds.Count,
            ds.Height,
            ds.Width,
            ds.Channels,
            ds.ClassNames,
            ds.ClassCounts(),
            mean,
            std,
            r.Grid
        );
    }
}
