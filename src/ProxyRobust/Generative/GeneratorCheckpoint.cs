using System.Security.Cryptography;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>
/// A generator checkpoint is two files, like a classifier's: STEM.safetensors (the network, its EMA or discriminator,
/// optimiser moments, under name prefixes) and STEM.json (format, kind "ddpm" or "gan", spec, options, step, history,
/// and the SHA-256 of the tensor file). Both are written to temporaries and renamed, tensors first.
/// </summary>
public static class GeneratorCheckpoint
{
    public const string Format = "proxyrobust-generator/1";

    /// <summary>The checkpoint meant by a path: a folder (its final), STEM.json, STEM.safetensors or STEM.</summary>
    public static string Resolve(string path) =>
        Directory.Exists(path) ? Path.Combine(path, "final")
        : path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? path[..^5]
        : path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? path[..^12]
        : path;

    public static void Save(string stem, Dictionary<string, Tensor> tensors, JsonObject run)
    {
        byte[] bytes;
        using (var ms = new MemoryStream())
        {
            Safetensors.SaveStateDict(ms, tensors, leaveOpen: true);
            bytes = ms.ToArray();
        }
        AtomicFile.WriteAllBytes(stem + ".safetensors", bytes);
        run["format"] = Format;
        run["weights"] = Path.GetFileName(stem + ".safetensors");
        run["weightsSha256"] = Convert.ToHexString(SHA256.HashData(bytes));
        JsonFiles.WriteObject(stem + ".json", run);
    }

    /// <summary>Reads STEM.json alone (the run's record), checking its format.</summary>
    public static JsonObject ReadRun(string stem)
    {
        var json = stem + ".json";
        if (!File.Exists(json))
            throw new DataFormatException(json, "generator checkpoint not found");
        JsonObject run;
        try
        {
            run = JsonFiles.ReadObject(json);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            throw new DataFormatException(json, $"is not a readable checkpoint ({e.Message})");
        }
        if (run["format"]?.GetValue<string>() != Format)
            throw new DataFormatException(json, $"is not a generator checkpoint (expected format {Format})");
        return run;
    }

    /// <summary>Reads STEM.json and its tensors, checking the format and the tensors' hash.</summary>
    public static (JsonObject Run, Dictionary<string, Tensor> Tensors) Read(string stem)
    {
        var run = ReadRun(stem);
        var weights = Path.Combine(Path.GetDirectoryName(stem) ?? "", run["weights"]?.GetValue<string>() ?? "");
        if (!File.Exists(weights))
            throw new DataFormatException(weights, "the checkpoint's tensor file is missing");
        var bytes = File.ReadAllBytes(weights);
        if (Convert.ToHexString(SHA256.HashData(bytes)) != run["weightsSha256"]?.GetValue<string>())
            throw new DataFormatException(
                weights,
                "does not match its checkpoint (hash differs): truncated or replaced"
            );
        Dictionary<string, Tensor> tensors;
        try
        {
            using var ms = new MemoryStream(bytes);
            tensors = Safetensors.LoadStateDict(ms);
        }
        catch (Exception e)
        {
            throw new DataFormatException(weights, $"cannot be read as safetensors ({e.Message})");
        }
        GeneratorPack.Dequantize(tensors, weights); // int8 packs (generator pack --precision int8)
        return (run, tensors);
    }

    /// <summary>Copies the tensors named PREFIX + (state-dict name) into a module, checking names and shapes.</summary>
    public static void LoadInto(nn.Module module, Dictionary<string, Tensor> tensors, string prefix, string stem)
    {
        using var noGrad = no_grad();
        foreach (var (name, t) in module.state_dict())
        {
            var source = Require(tensors, prefix + name, stem);
            if (!source.shape.SequenceEqual(t.shape))
                throw new DataFormatException(stem + ".safetensors", $"'{prefix + name}' has the wrong shape");
            t.copy_(source);
        }
    }

    public static Tensor Require(Dictionary<string, Tensor> tensors, string name, string stem) =>
        tensors.TryGetValue(name, out var t)
            ? t
            : throw new DataFormatException(stem + ".safetensors", $"tensor '{name}' is missing");

    /// <summary>The training images fit the generator: shape and class count (one error naming the data
    /// otherwise).</summary>
    public static void CheckData(Data.ImageDataset data, int channels, int height, int width, int classes, string what)
    {
        if (data.Channels != channels || data.Height != height || data.Width != width)
            throw new DataFormatException(
                data.Source,
                $"{data.Channels}x{data.Height}x{data.Width} images, the {what} is for {channels}x{height}x{width}"
            );
        if (data.NumClasses != classes)
            throw new DataFormatException(data.Source, $"{data.NumClasses} classes, the {what} has {classes}");
    }

    /// <summary>A resumed run must continue the same run: the options saved in STEM.json equal these, apart from the
    /// ones that may change between runs (<paramref name="free"/> sets them to a common value on both sides).</summary>
    public static void CheckSameOptions<T>(JsonObject run, T options, Func<T, T> free, string stem)
        where T : class
    {
        var saved = JsonFiles.FromNode<T>(run["options"]);
        if (saved is null || !free(saved).Equals(free(options)))
            throw new DataFormatException(
                stem + ".json",
                "was written with different training options; resume with the same options or start a new output folder"
            );
    }
}
