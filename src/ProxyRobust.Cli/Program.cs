using System.CommandLine;
using System.Runtime.InteropServices;
using ProxyRobust.Cli;

// Exit codes: 0 ok, 1 failure (bad data, bad checkpoint, runtime error), 2 bad usage, 130 interrupted (state saved).
// Ctrl-C (SIGINT) and SIGTERM cancel the running verb through its token: it saves its state and exits; a second one
// kills.
using var interrupt = new CancellationTokenSource();
void OnSignal(PosixSignalContext context)
{
    if (interrupt.IsCancellationRequested)
        return; // the second signal: the default action, which ends the process
    context.Cancel = true;
    Console.Error.WriteLine(
        $"{context.Signal}: stopping after the current step and saving state (send it again to kill)"
    );
    interrupt.Cancel();
}
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

var cancel = interrupt.Token;
var root = new RootCommand(
    "ProxyRobust: adversarially robust classifiers trained on real + generated images, and their evaluation."
)
{
    TrainCommand.Create(cancel),
    EvalCommand.Create(cancel),
    DataCommand.Create(),
    LabelCommand.Create(),
    CertifyCommand.Create(cancel),
    ExportCommand.Create(),
    SweepCommand.Create(cancel),
    ReportCommand.Create(),
    DemoCommand.Create(cancel),
    GeneratorCommand.Create(cancel),
    SyntheticCommand.Create(),
    ArcCommand.Create(cancel),
    CompareProxiesCommand.Create(cancel),
    CheckCommand.Create(),
};

var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors)
        Console.Error.WriteLine($"error: {error.Message}");
    Console.Error.WriteLine("Run 'proxyrobust --help' (or 'proxyrobust VERB --help') for usage.");
    return ExitCodes.Usage;
}

// In an MPI job a failed rank aborts the whole job instead of leaving the others waiting for it.
return ProxyRobust.Distributed.Mpi.End(parse.Invoke());
