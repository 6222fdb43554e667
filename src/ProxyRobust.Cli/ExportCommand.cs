using System.CommandLine;
using ProxyRobust.Export;
using ProxyRobust.Reporting;
using ProxyRobust.Training;
using ProxyRobust.Core;

namespace ProxyRobust.Cli;

internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint: NAME.json, NAME.safetensors or a run folder", Required = true };
        var format = new Option<string>("--format") { Description = "onnx (the whole forward pass) or safetensors (plain state dict, PyTorch names)", Required = true }
            .AcceptOnlyFromAmong("onnx", "safetensors");
        var output = new Option<string>("--out") { Description = "file to write", Required = true };
        var ema = new Option<bool>("--ema") { Description = "export the EMA weights (if the checkpoint has them)" };
        var cmd = new Command("export", "Write a model for other frameworks (ONNX, or safetensors with the architecture in its metadata; see docs/EXPORT.md).")
        {
            checkpoint, format, output, ema,
        };
        cmd.SetAction(p => ExitCodes.Guard(() =>
        {
            Shared.StartTorch(1);
            using var model = Checkpoint.LoadClassifier(p.GetValue(checkpoint)!, p.GetValue(ema));
            model.eval();
            var bytes = p.GetValue(format) == "onnx" ? ModelExport.ToOnnx(model) : ModelExport.ToSafetensors(model, ModelExport.Metadata(model));
            AtomicFile.WriteAllBytes(p.GetValue(output)!, bytes);
            Console.WriteLine($"wrote {p.GetValue(output)} ({bytes.Length / 1024.0 / 1024.0:F1} MB, {p.GetValue(format)}, {model.Spec})");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
