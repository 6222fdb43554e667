using System.CommandLine;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "checkpoint: NAME.json, NAME.safetensors or a run folder",
            Required = true,
        };
        var format = new Option<string>("--format")
        {
            Description = "onnx (the whole forward pass) or safetensors (plain state dict, PyTorch names)",
            Required = true,
        }.AcceptOnlyFromAmong("onnx", "safetensors");
        var output = new Option<string>("--out") { Description = "file to write", Required = true };
        var ema = new Option<bool>("--ema") { Description = "export the EMA weights (if the checkpoint has them)" };
        var cmd = new Command(
            "export",
            "Write a model for other frameworks (ONNX, or safetensors with the architecture in its metadata; see "
                + "docs/EXPORT.md)."
        )
        {
            checkpoint,
            format,
            output,
            ema,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var request = new ExportRequest(
                    p.GetValue(checkpoint)!,
                    p.GetValue(format) == "onnx" ? ExportFormat.Onnx : ExportFormat.Safetensors,
                    p.GetValue(output)!,
                    p.GetValue(ema)
                );
                Shared.StartTorch(1);
                var o = ExportRun.Execute(request);
                Console.WriteLine(
                    $"wrote {o.Output} ({o.Bytes / 1024.0 / 1024.0:F1} MB, {p.GetValue(format)}, {o.Model})"
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
