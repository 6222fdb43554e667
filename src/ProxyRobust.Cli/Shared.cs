using System.CommandLine;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Native;
using ProxyRobust.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Cli;

/// <summary>Options that several verbs share, and the torch set-up they imply.</summary>
internal static class Shared
{
    public static Option<string> Data(string description = "training data: 'fashion-mnist' (Debian's package), an IDX/CIFAR/image folder, or an images .npy") =>
        new("--data") { Description = description, DefaultValueFactory = _ => DatasetLoader.FashionMnistName };

    public static Option<string?> Labels() => new("--labels") { Description = "labels .npy for an images .npy or .bin (default: NAME.labels.npy)" };

    public static Option<string> Device() =>
        new Option<string>("--device") { Description = "cpu or cuda (needs a CUDA TorchSharp package)", DefaultValueFactory = _ => "cpu" }
            .AcceptOnlyFromAmong("cpu", "cuda");

    public static Option<int> Threads() =>
        new("--threads") { Description = "CPU threads for torch (0: all cores)", DefaultValueFactory = _ => 0 };

    public static Option<int> Seed() => new("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };

    public static Option<int> BatchSize(int dflt) => new("--batch-size") { Description = "images per batch", DefaultValueFactory = _ => dflt };

    public static void StartTorch(int threads)
    {
        TorchRuntime.EnsureInitialised();
        torch.set_num_threads(threads > 0 ? threads : Environment.ProcessorCount);
    }

    /// <summary>
    /// What eval and certify both start from: the classifier on its device, the data it must accept, and the points to use
    /// (a seeded, class-balanced subset of <paramref name="count"/> when given).
    /// </summary>
    public static ModelAndData OpenModelAndData(string checkpoint, bool ema, string? data, string split, string? labels,
                                                int? count, int seed, Device device)
    {
        var model = Checkpoint.LoadClassifier(checkpoint, ema);
        model.to(device);
        var full = DatasetLoader.Load(data, ParseSplit(split), labels);
        try
        {
            model.Spec.CheckAccepts(full.Source, full.Channels, full.Height, full.Width, full.NumClasses);
        }
        catch
        {
            model.Dispose();
            full.Dispose();
            throw;
        }
        var points = count is { } c && c < full.Count ? full.Split(TrainCommand.Positive(c, "--n-examples"), seed).Taken : full;
        return new ModelAndData(model, full, points);
    }

    public sealed record ModelAndData(Classifier Model, ImageDataset Full, ImageDataset Points) : IDisposable
    {
        public void Dispose()
        {
            Model.Dispose();
            Full.Dispose();
        }
    }

    public static Option<string?> SavePoints() => new("--save-points")
    {
        Description = "write the points used (float32 N x H x W x C .npy in [0,1], labels beside in .labels.npy), to run another implementation on exactly them",
    };

    /// <summary>Writes the data set's images as float32 NHWC in [0,1] (the form every other tool takes) and its labels.</summary>
    public static void SavePoints(ImageDataset dataset, string path)
    {
        using var scope = NewDisposeScope();
        var (clean, _) = BatchSampler.All(dataset, CPU);
        WriteImages(path, clean.permute(0, 2, 3, 1).contiguous().data<float>().ToArray(), dataset);
    }

    /// <summary>Images of <paramref name="dataset"/>'s points (float32 NHWC, e.g. adversarial examples) as PATH, their labels as PATH.labels.npy.</summary>
    public static void WriteImages(string path, float[] nhwc, ImageDataset dataset)
    {
        Npy.WriteFloats(path, [dataset.Count, dataset.Height, dataset.Width, dataset.Channels], nhwc);
        Npy.WriteLabels(Path.ChangeExtension(path, null) + ".labels.npy", dataset.Labels);
    }

    public static Split ParseSplit(string s) => s.ToLowerInvariant() switch
    {
        "train" => Split.Train,
        "test" => Split.Test,
        _ => throw new UsageException($"--split must be train or test, not '{s}'"),
    };

    public static void Table(string title, IEnumerable<(string Key, string Value)> rows)
    {
        var table = new Table().Title(title).AddColumn("").AddColumn("");
        table.HideHeaders();
        foreach (var (k, v) in rows) table.AddRow(Markup.Escape(k), Markup.Escape(v));
        AnsiConsole.Write(table);
    }
}
