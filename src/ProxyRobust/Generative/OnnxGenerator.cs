using System.Security.Cryptography;
using Microsoft.ML.OnnxRuntime;
using ProxyRobust.Core;
using TorchSharp;
using static TorchSharp.torch;
using TensorElementType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;

namespace ProxyRobust.Generative;

/// <summary>
/// A class-conditional generator exported to ONNX elsewhere (e.g. torch.onnx.export of a GAN generator), sampled with
/// ONNX Runtime. Its signature is read from the model: the latent is the float input of shape [N, D] or [N, D, 1, 1]
/// (DCGAN style), the label the integer input of shape [N]; the first output holds the images, N x C x H x W or
/// N x H x W x C with C = 1 or 3, in [-1, 1] (tanh) or [0, 1]. Inputs can be named when the guess is ambiguous.
/// Latents are standard normal, drawn from the store writer's seeded stream, so stores are as deterministic,
/// resumable and shardable as those of the generators trained here.
/// </summary>
public sealed class OnnxGenerator : IDisposable
{
    private readonly InferenceSession session;
    private readonly string latentName,
        labelName,
        outputName;
    private readonly int[] latentShape;
    private readonly bool labelIsInt64,
        nhwc;
    private readonly FloatRange range;

    public string Path { get; }
    public int LatentDim { get; }
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }
    public string Sha256 { get; }

    public OnnxGenerator(
        string path,
        int numClasses,
        FloatRange range,
        string? latentInput = null,
        string? labelInput = null
    )
    {
        Path = path;
        this.range = range;
        if (!File.Exists(path))
            throw new DataFormatException(path, "ONNX model not found");
        using (var fs = File.OpenRead(path))
            Sha256 = Convert.ToHexString(SHA256.HashData(fs));
        try
        {
            session = new InferenceSession(path);
        }
        catch (OnnxRuntimeException e)
        {
            throw new DataFormatException(path, $"not a loadable ONNX model ({FirstLine(e.Message)})");
        }
        try
        {
            var inputs = session.InputMetadata;
            string Pick(string? named, Func<NodeMetadata, bool> fits, string what)
            {
                if (named is not null)
                    return inputs.ContainsKey(named)
                        ? named
                        : throw new DataFormatException(
                            path,
                            $"has no input '{named}' (inputs: {string.Join(", ", inputs.Keys)})"
                        );
                var candidates = inputs.Where(kv => fits(kv.Value)).Select(kv => kv.Key).ToList();
                return candidates.Count == 1
                    ? candidates[0]
                    : throw new DataFormatException(
                        path,
                        $"{(candidates.Count == 0 ? "no" : "more than one")} input looks like {what} (inputs: "
                            + $"{Describe(inputs)}); name it"
                    );
            }
            static bool IsInteger(NodeMetadata m) => m.ElementType == typeof(long) || m.ElementType == typeof(int);
            latentName = Pick(
                latentInput,
                m =>
                    m.ElementType == typeof(float)
                    && (m.Dimensions.Length == 2 || m.Dimensions.Length == 4 && m.Dimensions[2] == 1)
                    && m.Dimensions[1] > 0,
                "a latent (float [N, D] or [N, D, 1, 1])"
            );
            labelName = Pick(labelInput, m => IsInteger(m) && m.Dimensions.Length == 1, "a label (integer [N])");
            if (inputs.Count != 2)
                throw new DataFormatException(
                    path,
                    $"a class-conditional generator takes a latent and a label; this one takes {Describe(inputs)}"
                );
            var latent = inputs[latentName];
            if (
                latent.ElementType != typeof(float)
                || latent.Dimensions.Length is not (2 or 4)
                || latent.Dimensions[1] < 1
            )
                throw new DataFormatException(path, $"input '{latentName}' is not a float latent [N, D]");
            latentShape = latent.Dimensions.Length == 2 ? [0, latent.Dimensions[1]] : [0, latent.Dimensions[1], 1, 1];
            LatentDim = latent.Dimensions[1];
            labelIsInt64 = inputs[labelName].ElementType == typeof(long);
            if (!IsInteger(inputs[labelName]))
                throw new DataFormatException(path, $"input '{labelName}' is not an integer label");
            outputName = session.OutputMetadata.Keys.First();

            // one image tells the output layout, whatever the model declares
            using var probe = Run(zeros([1, LatentDim]), zeros([1], ScalarType.Int64));
            var shape = probe.shape;
            if (shape.Length != 4 || shape[0] != 1)
                throw new DataFormatException(
                    path,
                    $"output '{outputName}' has shape ({string.Join(", ", shape)}) for one latent: not an image batch"
                );
            nhwc = shape[1] is not (1 or 3) && shape[3] is 1 or 3;
            if (shape[1] is not (1 or 3) && !nhwc)
                throw new DataFormatException(
                    path,
                    $"output shape ({string.Join(", ", shape)}) has no channel dimension of 1 or 3"
                );
            (Channels, Height, Width) = nhwc
                ? ((int)shape[3], (int)shape[1], (int)shape[2])
                : ((int)shape[1], (int)shape[2], (int)shape[3]);
            if (numClasses < 1)
                throw new ArgumentException("the number of classes must be positive");
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();

    private static string Describe(IReadOnlyDictionary<string, NodeMetadata> inputs) =>
        string.Join(
            ", ",
            inputs.Select(kv => $"{kv.Key} {kv.Value.ElementType.Name}[{string.Join(", ", kv.Value.Dimensions)}]")
        );

    /// <summary>The model's raw output for latents [N, D] and labels [N] (int64), as a float tensor.</summary>
    private Tensor Run(Tensor z, Tensor labels)
    {
        int n = (int)z.shape[0];
        var zValues = z.contiguous().cpu().data<float>().ToArray();
        var shape = latentShape.Select(d => (long)d).ToArray();
        shape[0] = n;
        using var zValue = OrtValue.CreateTensorValueFromMemory(zValues, shape);
        var labelValues = labels.cpu().to(ScalarType.Int64).data<long>().ToArray();
        using var yValue = labelIsInt64
            ? OrtValue.CreateTensorValueFromMemory(labelValues, [n])
            : OrtValue.CreateTensorValueFromMemory(labelValues.Select(l => (int)l).ToArray(), [n]);
        try
        {
            using var options = new RunOptions();
            using var results = session.Run(
                options,
                new Dictionary<string, OrtValue> { [latentName] = zValue, [labelName] = yValue },
                [outputName]
            );
            var output = results[0];
            var info = output.GetTensorTypeAndShape();
            if (info.ElementDataType != TensorElementType.Float)
                throw new DataFormatException(Path, $"output '{outputName}' is {info.ElementDataType}, not float");
            var data = output.GetTensorDataAsSpan<float>().ToArray();
            return tensor(data, info.Shape, ScalarType.Float32);
        }
        catch (OnnxRuntimeException e)
        {
            throw new DataFormatException(Path, $"failed to run ({FirstLine(e.Message)})");
        }
    }

    /// <summary>Images in [0, 1], N x C x H x W, for the labels, from latents drawn from <paramref
    /// name="generator"/>; outputs outside the declared range (beyond rounding) are an error, not clipped.</summary>
    public Tensor Sample(Tensor labels, torch.Generator generator)
    {
        using var scope = NewDisposeScope();
        var z = randn([labels.shape[0], LatentDim], generator: generator);
        var x = Run(z, labels);
        if (nhwc)
            x = x.permute(0, 3, 1, 2);
        if (range == FloatRange.MinusOneOne)
            x = (x + 1) / 2;
        double low = x.min().item<float>(),
            high = x.max().item<float>();
        if (!double.IsFinite(low) || !double.IsFinite(high) || low < -1e-3 || high > 1 + 1e-3)
            throw new DataFormatException(
                Path,
                $"output values run from {Back(low)} to {Back(high)}, outside "
                    + (range == FloatRange.MinusOneOne ? "[-1, 1]" : "[0, 1] (is it a tanh output? say -1,1)")
            );
        return x.clamp(0, 1).contiguous().MoveToOuterDisposeScope();
    }

    private double Back(double v) => range == FloatRange.MinusOneOne ? 2 * v - 1 : v;

    public void Dispose() => session.Dispose();
}
