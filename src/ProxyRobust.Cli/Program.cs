using System.CommandLine;
using ProxyRobust.Cli;

// Exit codes: 0 ok, 1 failure (bad data, bad checkpoint, runtime error), 2 bad usage.
var root = new RootCommand("ProxyRobust: adversarially robust classifiers trained on real + generated images, and their evaluation.");
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(DataCommand.Create());
root.Subcommands.Add(LabelCommand.Create());
root.Subcommands.Add(CertifyCommand.Create());
root.Subcommands.Add(ExportCommand.Create());
root.Subcommands.Add(SweepCommand.Create());
root.Subcommands.Add(ReportCommand.Create());
root.Subcommands.Add(DemoCommand.Create());

var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors) Console.Error.WriteLine($"error: {error.Message}");
    Console.Error.WriteLine("Run 'proxyrobust --help' (or 'proxyrobust VERB --help') for usage.");
    return ExitCodes.Usage;
}
return parse.Invoke();
