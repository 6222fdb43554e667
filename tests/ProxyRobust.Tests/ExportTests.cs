using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using ProxyRobust.Core;
using ProxyRobust.Export;
using ProxyRobust.Models;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

public sealed class ExportTests
{
    public ExportTests() => TestSupport.InitTorch();

    /// <summary>A model with random weights and random BatchNorm running statistics, so eval-mode BN is
    /// exercised.</summary>
    private static Classifier RandomModel(string arch, int c, int h, int w)
    {
        torch.manual_seed(5);
        var model = ArchSpec
            .For(arch, c, h, w, 10, Enumerable.Repeat(0.4f, c).ToArray(), Enumerable.Repeat(0.3f, c).ToArray())
            .Create();
        using (no_grad())
            foreach (var (name, t) in model.state_dict())
            {
                if (name.EndsWith("running_mean"))
                    t.copy_(randn_like(t) * 0.1);
                if (name.EndsWith("running_var"))
                    t.copy_(rand_like(t) + 0.5);
                if (name.EndsWith("bn1.weight") || name.EndsWith("bn2.weight"))
                    t.copy_(rand_like(t) + 0.5);
            }
        model.eval();
        return model;
    }

    [Theory]
    [InlineData("small-cnn", 1, 28, 28)]
    [InlineData("preact-resnet18", 3, 32, 32)]
    [InlineData("wrn-10-2", 3, 32, 32)]
    public void Onnx_export_computes_the_same_logits_in_onnx_runtime(string arch, int c, int h, int w)
    {
        using var model = RandomModel(arch, c, h, w);
        var onnx = ModelExport.ToOnnx(model);
        torch.manual_seed(6);
        using var x = rand(3, c, h, w);
        float[] expected;
        using (no_grad())
            expected = model.call(x).data<float>().ToArray();

        using var session = new InferenceSession(onnx);
        var input = new DenseTensor<float>(x.data<float>().ToArray(), [3, c, h, w]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", input)]);
        var actual = results.Single(r => r.Name == "logits").AsEnumerable<float>().ToArray();
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(
                Math.Abs(expected[i] - actual[i]) <= 1e-4 * scale + 1e-5,
                $"logit {i}: torch {expected[i]} vs onnxruntime {actual[i]}"
            );
    }

    [Fact]
    public void Safetensors_export_holds_every_tensor_and_the_architecture()
    {
        using var model = RandomModel("preact-resnet18", 3, 32, 32);
        var bytes = ModelExport.ToSafetensors(model, ModelExport.Metadata(model));
        // Parse the format by hand (header length, JSON header, offsets) ...
        long headerLength = (long)BitConverter.ToUInt64(bytes, 0);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength))!.AsObject();
        var arch = JsonFiles.FromNode<ArchSpec>(JsonNode.Parse((string)header["__metadata__"]!["arch"]!))!;
        Assert.Equal(model.Spec, arch);
        var state = model.state_dict();
        Assert.Equal(state.Count, header.Count - 1);
        foreach (var (name, t) in state)
        {
            var entry = header[name]!;
            Assert.Equal(t.shape, entry["shape"]!.AsArray().Select(d => (long)d!).ToArray());
            long start = 8 + headerLength + (long)entry["data_offsets"]![0]!,
                end = 8 + headerLength + (long)entry["data_offsets"]![1]!;
            if (t.dtype == ScalarType.Float32)
            {
                var values = new float[(end - start) / 4];
                Buffer.BlockCopy(bytes, (int)start, values, 0, values.Length * 4);
                Assert.Equal(t.data<float>().ToArray(), values);
            }
        }
        // ... and with TorchSharp's own reader: loading it into a fresh model gives the same outputs.
        using var ms = new MemoryStream(bytes);
        var loaded = TorchSharp.PyBridge.Safetensors.LoadStateDict(ms);
        using var fresh = arch.Create();
        Checkpoint.LoadInto(fresh, loaded, "", "export");
        fresh.eval();
        using var x = rand(2, 3, 32, 32);
        using (no_grad())
            Assert.True(fresh.call(x).allclose(model.call(x)));
    }

    [Fact]
    public void Export_cli_writes_onnx_and_rejects_a_corrupt_checkpoint()
    {
        using var tmp = new TempDir();
        using var model = RandomModel("small-cnn", 1, 28, 28);
        Checkpoint.Save(tmp.File("m"), model, null, null, new JsonObject());
        var (code, _, err) = TestSupport.RunCli(
            "export",
            "--checkpoint",
            tmp.File("m.json"),
            "--format",
            "onnx",
            "--out",
            tmp.File("m.onnx")
        );
        Assert.True(code == 0, err);
        using (var session = new InferenceSession(tmp.File("m.onnx")))
            Assert.Equal([-1, 1, 28, 28], session.InputMetadata["input"].Dimensions);
        // truncate the weights: one clear error, exit 1, nothing written
        var weights = File.ReadAllBytes(tmp.File("m.safetensors"));
        File.WriteAllBytes(tmp.File("m.safetensors"), weights[..(weights.Length / 2)]);
        (code, _, err) = TestSupport.RunCli(
            "export",
            "--checkpoint",
            tmp.File("m.json"),
            "--format",
            "safetensors",
            "--out",
            tmp.File("x.safetensors")
        );
        Assert.Equal(1, code);
        Assert.Contains("m.safetensors", err);
        Assert.False(File.Exists(tmp.File("x.safetensors")));
    }
}
