using ProxyRobust.Core;

namespace ProxyRobust.Data;

public enum Split
{
    Train,
    Test,
}

/// <summary>
/// Finds and opens a data set from one path, whatever its format:
/// <list type="bullet">
/// <item>"fashion-mnist" (or nothing): Debian's dataset-fashion-mnist package;</item>
/// <item>a folder of IDX files (train-images-idx3-ubyte[.gz], t10k-...);</item>
/// <item>a folder of CIFAR binary batches (data_batch_*.bin + test_batch.bin, or train.bin + test.bin for CIFAR-100),
/// or one .bin file;</item>
/// <item>a folder with train/ and test/ image folders, or one image folder;</item>
/// <item>an images .npy (or raw .bin) with its labels at NAME.labels.npy or NAME_labels.npy, or given
/// explicitly.</item>
/// </list>
/// </summary>
public static class DatasetLoader
{
    public const string FashionMnistName = "fashion-mnist";
    public const string DebianFashionMnistDir = "/usr/share/datasets/fashion-mnist";

    public static readonly string[] FashionMnistClasses =
    [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ];

    /// <summary>Where Fashion-MNIST is on this machine, or null. PROXYROBUST_FASHION_MNIST overrides the Debian
    /// location.</summary>
    public static string? FindFashionMnist()
    {
        var env = Environment.GetEnvironmentVariable("PROXYROBUST_FASHION_MNIST");
        foreach (var dir in new[] { env, DebianFashionMnistDir })
            if (!string.IsNullOrEmpty(dir) && FindIdxPair(dir, Split.Train) is not null)
                return dir;
        return null;
    }

    /// <param name="classes">the number of classes, when the files do not say (IDX, .npy): labels must lie below it;
    /// without it, every class from 0 to the largest label must occur</param>
    public static ImageDataset Load(string? path, Split split, string? labelsPath = null, int? classes = null)
    {
        if (string.IsNullOrEmpty(path) || path.Equals(FashionMnistName, StringComparison.OrdinalIgnoreCase))
        {
            var dir =
                FindFashionMnist()
                ?? throw new DataFormatException(
                    DebianFashionMnistDir,
                    "Fashion-MNIST not found: install Debian's dataset-fashion-mnist package (apt-get install "
                        + "dataset-fashion-mnist), or use another data set"
                );
            var (img, lbl) = FindIdxPair(dir, split)!.Value;
            return IdxReader.Read(img, lbl, FashionMnistClasses, classes);
        }
        if (File.Exists(path))
        {
            var ext = Path.GetExtension(path).ToLowerInvariant();
            if (ext == ".npy" || labelsPath is not null || FindLabelsFor(path) is not null)
                return NpyDataset.Read(
                    path,
                    labelsPath
                        ?? FindLabelsFor(path)
                        ?? throw new DataFormatException(
                            path,
                            "no labels file: pass one, or put it at NAME.labels.npy"
                        ),
                    classes: classes
                );
            if (ext == ".bin")
                return CifarReader.Read([path], cifar100: LooksLikeCifar100(path));
            throw new DataFormatException(path, "unknown data format (expected .npy, CIFAR .bin, or a folder)");
        }
        if (!Directory.Exists(path))
            throw new DataFormatException(path, "no such file or folder");

        if (FindIdxPair(path, split) is { } idx)
        {
            var names = Path.GetFullPath(path)
                .TrimEnd('/')
                .EndsWith("fashion-mnist", StringComparison.OrdinalIgnoreCase)
                ? FashionMnistClasses
                : null;
            return IdxReader.Read(idx.Images, idx.Labels, names, classes);
        }
        var cifar = FindCifarBatches(path, split);
        if (cifar.Files.Count > 0)
            return CifarReader.Read(cifar.Files, cifar.Cifar100);
        var sub = Path.Combine(path, split == Split.Train ? "train" : "test");
        if (Directory.Exists(sub))
            return ImageFolderReader.Read(sub);
        if (Directory.EnumerateFileSystemEntries(path).Any())
            return ImageFolderReader.Read(path);
        throw new DataFormatException(path, "empty folder: no IDX files, CIFAR batches, images or class sub-folders");
    }

    /// <summary>Whether <paramref name="path"/> holds the given split (a single file holds one unnamed split: false for
    /// Test).</summary>
    public static bool HasSplit(string? path, Split split)
    {
        if (string.IsNullOrEmpty(path) || path.Equals(FashionMnistName, StringComparison.OrdinalIgnoreCase))
            return true;
        if (File.Exists(path))
            return split == Split.Train;
        if (!Directory.Exists(path))
            return split == Split.Train;
        if (FindIdxPair(path, Split.Train) is not null)
            return FindIdxPair(path, split) is not null;
        if (FindCifarBatches(path, Split.Train).Files.Count > 0)
            return FindCifarBatches(path, split).Files.Count > 0;
        if (Directory.Exists(Path.Combine(path, "train")))
            return Directory.Exists(Path.Combine(path, split == Split.Train ? "train" : "test"));
        return split == Split.Train;
    }

    private static (string Images, string Labels)? FindIdxPair(string dir, Split split)
    {
        if (!Directory.Exists(dir))
            return null;
        var prefix = split == Split.Train ? "train" : "t10k";
        string? Find(string stem) =>
            new[] { stem, stem + ".gz" }.Select(n => Path.Combine(dir, n)).FirstOrDefault(File.Exists);
        var img = Find($"{prefix}-images-idx3-ubyte") ?? Find($"{prefix}-images.idx3-ubyte");
        var lbl = Find($"{prefix}-labels-idx1-ubyte") ?? Find($"{prefix}-labels.idx1-ubyte");
        return img is not null && lbl is not null ? (img, lbl) : null;
    }

    private static (List<string> Files, bool Cifar100) FindCifarBatches(string dir, Split split)
    {
        if (split == Split.Train)
        {
            var batches = Directory.GetFiles(dir, "data_batch_*.bin").OrderBy(f => f, StringComparer.Ordinal).ToList();
            if (batches.Count > 0)
                return (batches, false);
        }
        else if (File.Exists(Path.Combine(dir, "test_batch.bin")))
            return ([Path.Combine(dir, "test_batch.bin")], false);
        var c100 = Path.Combine(dir, split == Split.Train ? "train.bin" : "test.bin");
        return File.Exists(c100) ? ([c100], true) : ([], false);
    }

    private static bool LooksLikeCifar100(string file)
    {
        long len = new FileInfo(file).Length;
        return len % 3073 != 0 && len % 3074 == 0;
    }

    /// <summary>The labels file beside an images file: NAME.labels.npy or NAME_labels.npy.</summary>
    public static string? FindLabelsFor(string imagesPath)
    {
        var stem = Path.Combine(
            Path.GetDirectoryName(Path.GetFullPath(imagesPath))!,
            Path.GetFileNameWithoutExtension(imagesPath)
        );
        return new[] { stem + ".labels.npy", stem + "_labels.npy" }.FirstOrDefault(File.Exists);
    }
}
