using System.CommandLine;
using ProxyRobust.Native;

namespace ProxyRobust.Cli;

internal static class CheckCommand
{
    public static Command Create()
    {
        var cmd = new Command(
            "check",
            "Check that this machine's libtorch computes the models' layers right (float32 forward and gradients "
                + "against float64) and say whether its oneDNN kernels are on; exit 1 when a result is wrong."
        );
        cmd.SetAction(_ =>
            ExitCodes.Guard(() =>
            {
                Shared.StartTorch(0);
                var report = NumericsCheck.Run();
                Console.WriteLine(
                    report.OneDnn switch
                    {
                        { Enabled: false, Reason: var why } => $"oneDNN: off ({why})",
                        { RepairedCaches: { } caches } =>
                            "oneDNN: on, with the cache sizes of CPUID's older AMD leaves "
                                + $"({caches}), as this CPU's leaf 0x8000001D is empty",
                        _ => "oneDNN: on",
                    }
                );
                foreach (var c in report.Cases)
                    Console.WriteLine(
                        $"{(c.Passed ? "ok   " : "WRONG")} {c.Name}: relative error {c.RelativeError:G3}"
                    );
                if (report.Passed)
                    return ExitCodes.Ok;
                Console.Error.WriteLine(
                    $"error: {report.Cases.Count(c => !c.Passed)} of {report.Cases.Count} results differ from float64 "
                        + $"by more than {report.Cases[0].Tolerance:G1} of their scale; results computed on this "
                        + $"machine are not to be trusted (try {OneDnnGuard.OverrideVariable}=off)"
                );
                return ExitCodes.Failure;
            })
        );
        return cmd;
    }
}
