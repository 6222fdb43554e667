using System.Runtime.InteropServices;
using System.Security.Cryptography;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using static TorchSharp.torch;

namespace ProxyRobust.Attacks;

/// <summary>
/// Where an AutoAttack run stands, saved after every batch so that a cut run continues with the same result:
/// the component and batch to run next, which points were robust when that component started (its batches are cut from
/// them), which are robust now, their predictions and adversarial examples, and the finished components. The examples
/// go to a .npy beside the JSON (a new name each save, so the JSON never points at a half-written file); the JSON names
/// it and its hash.
/// </summary>
public sealed record AutoAttackState(
    string Fingerprint,
    int Component,
    int Batch,
    string RobustAtComponentStart,
    string Robust,
    long[] Predictions,
    string AdversarialFile,
    string AdversarialSha256,
    int CleanCorrect,
    IReadOnlyList<AutoAttackStage> Stages,
    double ComponentSeconds,
    IReadOnlyList<string> Warnings
)
{
    /// <summary>Identifies a run: the same fingerprint means the same model weights, points, labels, threat model,
    /// version and seeds.</summary>
    public static string FingerprintOf(
        Classifier model,
        AutoAttack attack,
        ImageDataset data,
        IEnumerable<string> components,
        int batchSize,
        long seed
    )
    {
        var text =
            $"{attack.Threat}|{attack.Version}|{seed}|{batchSize}|{string.Join(',', components)}|{data.Count}|"
            + $"{data.Height}x{data.Width}x{data.Channels}|{string.Join(',', data.Labels)}";
        using var sha = SHA256.Create();
        foreach (var (_, t) in model.state_dict())
        {
            using var host = t.contiguous().cpu().to(ScalarType.Float32);
            var bytes = MemoryMarshal.AsBytes(host.data<float>().ToArray().AsSpan()).ToArray();
            sha.TransformBlock(bytes, 0, bytes.Length, null, 0);
        }
        for (int i = 0; i < data.Count; i++)
            sha.TransformBlock(data.Image(i).ToArray(), 0, data.ImageBytes, null, 0);
        var settings = System.Text.Encoding.UTF8.GetBytes(text);
        sha.TransformFinalBlock(settings, 0, settings.Length);
        return Convert.ToHexString(sha.Hash!);
    }

    /// <summary>Saves the state; the examples go flat (N*C*H*W floats, NCHW order) into the .npy beside it.</summary>
    public void Save(string path, float[] adversarialNchw)
    {
        var advName = $"{Path.GetFileName(path)}.adv-{Component}-{Batch}.npy";
        byte[] npy;
        using (var ms = new MemoryStream())
        {
            Npy.WriteTo(ms, "<f4", [adversarialNchw.LongLength], MemoryMarshal.AsBytes(adversarialNchw.AsSpan()));
            npy = ms.ToArray();
        }
        AtomicFile.WriteAllBytes(Path.Combine(Folder(path), advName), npy);
        var sha = Convert.ToHexString(SHA256.HashData(npy));
        JsonFiles.Write(path, this with { AdversarialFile = advName, AdversarialSha256 = sha });
        DeleteExamples(path, except: advName); // the previous save's, now that the JSON names the new one
    }

    /// <summary>Reads a saved state, or throws naming the file when it is unusable.</summary>
    public static (AutoAttackState State, float[] Adversarial) Load(string path)
    {
        var state = JsonFiles.Read<AutoAttackState>(path);
        var adv = Path.Combine(Folder(path), state.AdversarialFile);
        if (!File.Exists(adv))
            throw new DataFormatException(adv, "the adversarial examples of this AutoAttack state are missing");
        if (
            !string.Equals(
                Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(adv))),
                state.AdversarialSha256,
                StringComparison.OrdinalIgnoreCase
            )
        )
            throw new DataFormatException(
                adv,
                "contents do not match the checksum in the AutoAttack state (truncated or corrupt file)"
            );
        return (state, Npy.ReadFloats(adv));
    }

    /// <summary>Removes a finished run's state and its examples.</summary>
    public static void Delete(string path)
    {
        DeleteExamples(path, except: null);
        File.Delete(path);
    }

    private static string Folder(string path) => Path.GetDirectoryName(Path.GetFullPath(path))!;

    private static void DeleteExamples(string path, string? except)
    {
        if (!Directory.Exists(Folder(path)))
            return;
        foreach (var file in Directory.EnumerateFiles(Folder(path), $"{Path.GetFileName(path)}.adv-*.npy"))
            if (Path.GetFileName(file) != except)
                File.Delete(file);
    }
}
