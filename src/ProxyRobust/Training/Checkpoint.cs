using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace ProxyRobust.Training;

/// <summary>A checkpoint file that cannot be used; the message names the file and the problem.</summary>
public sealed class CheckpointException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner);

/// <summary>
/// A checkpoint is two files: NAME.safetensors (tensors) and NAME.json (the run: architecture, options, progress,
/// metrics, and the SHA-256 of the tensor file). The classifier's tensors carry their plain state-dict names, so the
/// file loads into the same architecture in PyTorch; EMA weights and optimizer state carry the prefixes "ema." and
/// "sgd.momentum.". Both files are written to temporaries and renamed, tensors first, so a crash leaves the previous
/// checkpoint intact.
/// </summary>
public static class Checkpoint
{
    public const string Format = "proxyrobust-checkpoint/1";
    public const string EmaPrefix = "ema.";
    public const string MomentumPrefix = "sgd.momentum.";

    public static string JsonPath(string pathWithoutExtension) => pathWithoutExtension + ".json";

    public static string WeightsPath(string pathWithoutExtension) => pathWithoutExtension + ".safetensors";

    public static void Save(
        string pathWithoutExtension,
        Classifier model,
        nn.Module? ema,
        Sgd? optimizer,
        JsonObject run
    )
    {
        using var scope = NewDisposeScope();
        // Contiguous copies: channels-last weights (Classifier.ChannelsLast) are stored in the standard NCHW order.
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, t) in model.state_dict())
            tensors[name] = t.contiguous();
        if (ema is not null)
            foreach (var (name, t) in ema.state_dict())
                tensors[EmaPrefix + name] = t.contiguous();
        if (optimizer is not null)
            foreach (var (name, t) in optimizer.Buffers())
                tensors[MomentumPrefix + name] = t.contiguous();

        var weights = WeightsPath(pathWithoutExtension);
        byte[] bytes;
        using (var ms = new MemoryStream())
        {
            Safetensors.SaveStateDict(ms, tensors, leaveOpen: true);
            bytes = ms.ToArray();
        }
        AtomicFile.WriteAllBytes(weights, bytes);

        run["format"] = Format;
        run["arch"] = JsonFiles.ToNode(model.Spec);
        run["weights"] = Path.GetFileName(weights);
        run["weightsSha256"] = Convert.ToHexString(SHA256.HashData(bytes));
        run["hasEma"] = ema is not null;
        JsonFiles.WriteObject(JsonPath(pathWithoutExtension), run);
    }

    /// <summary>Finds the checkpoint meant by a path: NAME.json, NAME.safetensors, NAME, or a run folder (final, else
    /// last).</summary>
    public static string Resolve(string path)
    {
        if (Directory.Exists(path))
        {
            foreach (var name in new[] { "final", "last" })
                if (File.Exists(Path.Combine(path, name + ".json")))
                    return Path.Combine(path, name);
            throw new CheckpointException(path, "no checkpoint in this folder (expected final.json or last.json)");
        }
        var stem =
            path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
            || path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
                ? Path.Combine(Path.GetDirectoryName(path) ?? "", Path.GetFileNameWithoutExtension(path))
                : path;
        if (!File.Exists(JsonPath(stem)))
            throw new CheckpointException(JsonPath(stem), "checkpoint file not found");
        return stem;
    }

    public static JsonObject ReadRun(string stem)
    {
        var json = JsonPath(stem);
        try
        {
            var node =
                JsonNode.Parse(File.ReadAllText(json)) as JsonObject
                ?? throw new CheckpointException(json, "not a JSON object");
            if ((string?)node["format"] != Format)
                throw new CheckpointException(
                    json,
                    $"not a ProxyRobust checkpoint (format '{(string?)node["format"]}', expected '{Format}')"
                );
            if ((int?)node["schemaVersion"] is { } version && version > JsonFiles.SchemaVersion)
                throw new CheckpointException(
                    json,
                    $"written with schema version {version}; this ProxyRobust reads versions 1 to "
                        + $"{JsonFiles.SchemaVersion} (update ProxyRobust)"
                );
            return node;
        }
        catch (JsonException e)
        {
            throw new CheckpointException(json, $"corrupt JSON ({e.Message})", e);
        }
    }

    public static ArchSpec ReadArch(JsonObject run, string stem)
    {
        try
        {
            var spec =
                JsonFiles.FromNode<ArchSpec>(run["arch"])
                ?? throw new CheckpointException(JsonPath(stem), "no architecture recorded");
            spec.Validate();
            return spec;
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new CheckpointException(JsonPath(stem), $"invalid architecture record ({e.Message})", e);
        }
    }

    /// <summary>Reads and verifies the tensor file (hash recorded in the JSON).</summary>
    public static Dictionary<string, Tensor> ReadTensors(string stem, JsonObject run)
    {
        var weights = WeightsPath(stem);
        if (!File.Exists(weights))
            throw new CheckpointException(weights, "tensor file not found");
        var bytes = File.ReadAllBytes(weights);
        var expected = (string?)run["weightsSha256"];
        if (
            expected is not null
            && !string.Equals(expected, Convert.ToHexString(SHA256.HashData(bytes)), StringComparison.OrdinalIgnoreCase)
        )
            throw new CheckpointException(
                weights,
                "contents do not match the checksum in the JSON (truncated or corrupt file)"
            );
        try
        {
            using var ms = new MemoryStream(bytes);
            return Safetensors.LoadStateDict(ms, leaveOpen: false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new CheckpointException(weights, $"not a readable safetensors file ({e.Message})", e);
        }
    }

    /// <summary>
    /// Copies tensors named <paramref name="prefix"/>+NAME into <paramref name="module"/>'s state. Every
    /// state entry must be present with the same shape; otherwise the file belongs to another architecture.
    /// </summary>
    public static void LoadInto(
        nn.Module module,
        IReadOnlyDictionary<string, Tensor> tensors,
        string prefix,
        string file
    )
    {
        using var noGrad = no_grad();
        foreach (var (name, target) in module.state_dict())
        {
            if (!tensors.TryGetValue(prefix + name, out var source))
                throw new CheckpointException(
                    file,
                    $"tensor '{prefix + name}' is missing: the file was written for a different architecture"
                );
            if (!source.shape.SequenceEqual(target.shape))
                throw new CheckpointException(
                    file,
                    $"tensor '{prefix + name}' has shape [{string.Join(", ", source.shape)}], the model expects "
                        + $"[{string.Join(", ", target.shape)}]: different architecture"
                );
            if (source.is_floating_point() && source.isnan().any().item<bool>())
                throw new CheckpointException(file, $"tensor '{prefix + name}' contains NaN");
            target.copy_(source);
        }
    }

    /// <summary>Loads a classifier from a checkpoint path (see <see cref="Resolve"/>); EMA weights when asked and
    /// present.</summary>
    public static Classifier LoadClassifier(string path, bool preferEma = false, ArchSpec? expected = null)
    {
        var stem = Resolve(path);
        var run = ReadRun(stem);
        var spec = ReadArch(run, stem);
        if (expected is not null && !spec.Equals(expected))
            throw new CheckpointException(
                JsonPath(stem),
                $"architecture {spec} does not match the expected {expected}"
            );
        var model = spec.Create();
        var tensors = ReadTensors(stem, run);
        try
        {
            bool useEma = preferEma && ((bool?)run["hasEma"] ?? false);
            LoadInto(model, tensors, useEma ? EmaPrefix : "", WeightsPath(stem));
        }
        finally
        {
            foreach (var t in tensors.Values)
                t.Dispose();
        }
        model.eval();
        return model;
    }
}
