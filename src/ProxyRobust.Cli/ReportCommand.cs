using System.CommandLine;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

internal static class ReportCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("DIR") { Description = "an experiment folder (written by demo or sweep)" };
        var cmd = new Command(
            "report",
            "Rebuild an experiment's report (report.md and its PNG plots) from its experiment.json."
        )
        {
            dir,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                Console.WriteLine($"wrote {ExperimentReport.Write(p.GetValue(dir)!)}");
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }
}
