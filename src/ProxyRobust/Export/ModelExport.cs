using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Core;
using ProxyRobust.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Export;

/// <summary>
/// Writes a classifier for other frameworks: ONNX (the whole forward pass including the normalisation, in
/// eval mode), or a plain safetensors state dict whose names follow the PyTorch modules of docs/EXPORT.md, with the
/// architecture record in the header's __metadata__. Both take pixels in [0,1], NCHW.
/// </summary>
public static class ModelExport
{
    public static byte[] ToOnnx(Classifier model)
    {
        var spec = model.Spec;
        var state = StateDict(model);
        var g = new OnnxGraph();
        var added = new HashSet<string>();
        string W(string name)
        {
            if (!state.TryGetValue(name, out var t))
                throw new InvalidOperationException($"ONNX export: tensor '{name}' not in the model");
            if (added.Add(name))
                g.Initializer(name, t.shape, t.to(ScalarType.Float32).contiguous().data<float>().ToArray());
            return name;
        }
        string Conv(string input, string prefix, int kernel, int stride, bool bias)
        {
            var inputs = bias
                ? new[] { input, W(prefix + ".weight"), W(prefix + ".bias") }
                : [input, W(prefix + ".weight")];
            int pad = kernel / 2;
            return g.Node(
                "Conv",
                inputs,
                null,
                ("kernel_shape", new long[] { kernel, kernel }),
                ("strides", new long[] { stride, stride }),
                ("pads", new long[] { pad, pad, pad, pad })
            );
        }
        string Bn(string input, string prefix) =>
            g.Node(
                "BatchNormalization",
                [
                    input,
                    W(prefix + ".weight"),
                    W(prefix + ".bias"),
                    W(prefix + ".running_mean"),
                    W(prefix + ".running_var"),
                ],
                null,
                ("epsilon", 1e-5f)
            );
        string Relu(string input) => g.Node("Relu", [input]);
        string Linear(string input, string prefix) =>
            g.Node("Gemm", [input, W(prefix + ".weight"), W(prefix + ".bias")], null, ("transB", 1));
        string Head(string input, string bn, string fc) =>
            Linear(g.Node("Flatten", [g.Node("GlobalAveragePool", [Relu(Bn(input, bn))])], null, ("axis", 1)), fc);
        string Block(string x, string prefix, int stride)
        {
            // PreActBlock: relu(bn1(x)) -> conv1 -> relu(bn2) -> conv2, plus x or a 1x1 projection of relu(bn1(x)).
            var o = Relu(Bn(x, prefix + ".bn1"));
            string? projection =
                state.ContainsKey(prefix + ".shortcut.weight") ? prefix + ".shortcut"
                : state.ContainsKey(prefix + ".convShortcut.weight") ? prefix + ".convShortcut"
                : null;
            var shortcut = projection is null ? x : Conv(o, projection, 1, stride, bias: false);
            o = Conv(o, prefix + ".conv1", 3, stride, bias: false);
            o = Conv(Relu(Bn(o, prefix + ".bn2")), prefix + ".conv2", 3, 1, bias: false);
            return g.Node("Add", [o, shortcut]);
        }

        g.Input("input", [null, spec.InChannels, spec.Height, spec.Width]);
        var h = g.Node("Div", [g.Node("Sub", ["input", W("normalize.mean")]), W("normalize.std")]);
        if (spec.Name == "small-cnn")
        {
            foreach (var conv in new[] { "net.conv1", "net.conv2" })
                h = g.Node(
                    "MaxPool",
                    [Relu(Conv(h, conv, 3, 1, bias: true))],
                    null,
                    ("kernel_shape", new long[] { 2, 2 }),
                    ("strides", new long[] { 2, 2 })
                );
            h = g.Node("Flatten", [h], null, ("axis", 1));
            h = Linear(Relu(Linear(h, "net.fc1")), "net.fc2");
        }
        else if (spec.Name == "preact-resnet18")
        {
            h = Conv(h, "net.conv1", 3, 1, bias: false);
            for (int layer = 1; layer <= 4; layer++)
            {
                for (int b = 0; b < 2; b++)
                    h = Block(h, $"net.layer{layer}.{b}", layer > 1 && b == 0 ? 2 : 1);
            }
            h = Head(h, "net.bn", "net.linear");
        }
        else
        {
            var (depth, _) =
                spec.Wrn() ?? throw new InvalidOperationException($"ONNX export: unknown architecture {spec.Name}");
            int n = (depth - 4) / 6;
            h = Conv(h, "net.conv1", 3, 1, bias: false);
            for (int group = 1; group <= 3; group++)
            {
                for (int b = 0; b < n; b++)
                    h = Block(h, $"net.block{group}.{b}", group > 1 && b == 0 ? 2 : 1);
            }
            h = Head(h, "net.bn1", "net.fc");
        }
        g.Node("Identity", [h], "logits");
        g.Output("logits", [null, spec.NumClasses]);
        return g.ToModel(spec.Name);
    }

    /// <summary>
    /// safetensors (https://github.com/huggingface/safetensors format): 8-byte little-endian header size, a
    /// JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the tensors' bytes in header
    /// order.
    /// </summary>
    public static byte[] ToSafetensors(Classifier model, IReadOnlyDictionary<string, string> metadata)
    {
        var state = StateDict(model);
        var header = new JsonObject
        {
            ["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
        };
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, t) in state.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var (dtype, bytes) = t.dtype switch
            {
                ScalarType.Float32 => ("F32", ToBytes(t.contiguous().data<float>().ToArray())),
                ScalarType.Int64 => ("I64", ToBytes(t.contiguous().data<long>().ToArray())),
                _ => throw new InvalidOperationException(
                    $"safetensors export: unsupported dtype {t.dtype} of '{name}'"
                ),
            };
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes.Length),
            };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padding = (8 - headerBytes.Length % 8) % 8; // align the data (spaces are allowed at the header's end)
        headerBytes = [.. headerBytes, .. Enumerable.Repeat((byte)' ', padding)];
        using var ms = new MemoryStream();
        ms.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
        ms.Write(headerBytes);
        foreach (var b in blobs)
            ms.Write(b);
        return ms.ToArray();
    }

    public static Dictionary<string, string> Metadata(Classifier model) =>
        new()
        {
            ["format"] = "proxyrobust-export/2",
            ["arch"] = JsonFiles.ToNode(model.Spec)!.ToJsonString(),
            ["input"] =
                $"float32 NCHW [N,{model.Spec.InChannels},{model.Spec.Height},{model.Spec.Width}], pixels in [0,1]; "
                + $"normalisation is inside the model (normalize.mean/std)",
        };

    private static byte[] ToBytes<T>(T[] values)
        where T : unmanaged
    {
        var bytes = new byte[values.Length * System.Runtime.InteropServices.Marshal.SizeOf<T>()];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return bytes;
    }

    private static Dictionary<string, Tensor> StateDict(Classifier model)
    {
        var result = new Dictionary<string, Tensor>();
        foreach (var (name, t) in model.state_dict())
            result[name] = t.detach().cpu();
        return result;
    }
}
