using System.Text.Json.Nodes;
using ProxyRobust.Core;
using static TorchSharp.torch;

namespace ProxyRobust.Generative;

/// <summary>
/// A packed generator: only what sampling reads (a DDPM's EMA weights; a GAN's generator with its batch-norm
/// statistics), optionally in float16, as a checkpoint that <c>generator sample</c> and every other reader of
/// generator checkpoints accept. The 1.45M-parameter default UNet packs into 2.9 MB in float16, against 25 MB for its
/// training checkpoint (raw weights, EMA and both Adam moments), which is what lets a trained generator ship in the
/// repository. A packed checkpoint cannot be resumed.
/// </summary>
public static class GeneratorPack
{
    /// <summary>Marks a packed checkpoint's record; its value names the precision and the source step.</summary>
    public const string PackedKey = "packed";

    /// <summary>Writes the packed checkpoint of <paramref name="from"/> to TO.json + TO.safetensors; returns the
    /// tensor file's size in bytes.</summary>
    public static long Write(string from, string to, bool half)
    {
        var stem = GeneratorCheckpoint.Resolve(from);
        var run = GeneratorCheckpoint.ReadRun(stem);
        var kind = run["kind"]?.GetValue<string>();
        var tensors = new Dictionary<string, Tensor>();
        using var scope = NewDisposeScope();
        // Loading through the samplers' own loaders keeps one definition of what sampling needs.
        switch (kind)
        {
            case "ddpm":
                using (var ddpm = DdpmTraining.Load(stem))
                    foreach (var (name, t) in ddpm.Net.state_dict())
                        tensors[DdpmTraining.EmaPrefix + name] = Convert(t, half);
                break;
            case "gan":
                using (var gan = GanTraining.Load(stem))
                    foreach (var (name, t) in gan.Generator.state_dict())
                        tensors[name] = Convert(t, half);
                break;
            default:
                throw new DataFormatException(stem + ".json", $"has an unknown generator kind '{kind}'");
        }
        var packed = new JsonObject
        {
            ["kind"] = kind,
            ["spec"] = run["spec"]?.DeepClone(),
            ["options"] = run["options"]?.DeepClone(),
            ["step"] = run["step"]?.DeepClone(),
            ["seconds"] = run["seconds"]?.DeepClone(),
            ["history"] = run["history"]?.DeepClone(),
            [PackedKey] = new JsonObject
            {
                ["precision"] = half ? "float16" : "float32",
                ["from"] = Path.GetFileName(stem),
                ["what"] = kind == "ddpm" ? "EMA weights" : "generator and its batch-norm statistics",
            },
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(to))!);
        GeneratorCheckpoint.Save(to, tensors, packed);
        return new FileInfo(to + ".safetensors").Length;
    }

    /// <summary>Float tensors to float16 when asked (integer buffers such as batch counts stay as they are); the
    /// loaders copy them back into float32 parameters.</summary>
    private static Tensor Convert(Tensor t, bool half) =>
        half && t.is_floating_point() ? t.detach().to(ScalarType.Float16) : t.detach().clone();

    /// <summary>True when the checkpoint's record says it is packed.</summary>
    public static bool IsPacked(JsonObject run) => run[PackedKey] is not null;
}
