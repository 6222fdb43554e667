using ProxyRobust.Core;
using ProxyRobust.Experiments;
using ProxyRobust.Generative;
using ProxyRobust.Training;
using Spectre.Console;

namespace ProxyRobust.Cli;

/// <summary>
/// Renders progress: live bars with rate and ETA on a terminal; one plain line per update otherwise (logs, CI), at most
/// every few seconds and at the end of every phase, so that a long phase never looks like a hang.
/// </summary>
internal static class ProgressView
{
    private static bool Plain => !AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected;

    public static T Train<T>(string title, Func<IProgress<TrainProgress>, T> work) =>
        Cell(title, (training, _) => work(training));

    /// <summary>Progress over a known number of items (labelling).</summary>
    public static T Count<T>(string title, int total, Func<IProgress<(int Done, int Total)>, T> work) =>
        Stages(title, stages => work(stages.Phase(title)!));

    /// <summary>A sequence of named phases, each over its own number of items (AutoAttack's components, evaluation,
    /// certification).</summary>
    public static T Stages<T>(string title, Func<IProgress<(string Stage, int Done, int Total)>, T> work) =>
        Cell(title, (_, stages) => work(stages));

    /// <summary>Training then evaluation phases of one run (an experiment cell, or the train verb).</summary>
    public static T Cell<T>(
        string title,
        Func<IProgress<TrainProgress>, IProgress<(string Phase, int Done, int Total)>, T> work
    )
    {
        if (Plain)
        {
            var lines = new PlainLines(title);
            return work(new Reporter<TrainProgress>(lines.Training), new Reporter<(string, int, int)>(lines.Phase));
        }
        T result = default!;
        Bars()
            .Start(ctx =>
            {
                ProgressTask? trainTask = null;
                var phases = new Dictionary<string, ProgressTask>();
                result = work(
                    new Reporter<TrainProgress>(p =>
                    {
                        trainTask ??= ctx.AddTask(Markup.Escape(title));
                        trainTask.MaxValue = p.TotalSteps;
                        trainTask.Value = p.Step;
                        trainTask.Description = Markup.Escape(
                            $"{title} ep {p.Epoch}/{p.Epochs} loss {p.Loss:F3} acc {p.Accuracy:P1} "
                                + $"{p.ImagesPerSecond:F0} img/s"
                        );
                    }),
                    new Reporter<(string Phase, int Done, int Total)>(p =>
                    {
                        if (!phases.TryGetValue(p.Phase, out var task))
                        {
                            foreach (var t in phases.Values)
                                t.StopTask();
                            phases[p.Phase] = task = ctx.AddTask(
                                Markup.Escape($"{title} {p.Phase}"),
                                maxValue: Math.Max(1, p.Total)
                            );
                        }
                        task.MaxValue = Math.Max(1, p.Total);
                        task.Value = p.Total == 0 ? 1 : p.Done;
                    })
                );
            });
        return result;
    }

    /// <summary>Generator training: step, loss and rate; a line every 5 s with an ETA when not on a terminal.</summary>
    public static T Generator<T>(string title, Func<IProgress<GeneratorProgress>, T> work)
    {
        if (Plain)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            double last = -1e9;
            return work(
                new Reporter<GeneratorProgress>(p =>
                {
                    double now = clock.Elapsed.TotalSeconds;
                    if (now - last < 5 && p.Step != p.Steps)
                        return;
                    last = now;
                    double eta = p.EtaSeconds;
                    Console.WriteLine(
                        $"{title}: step {p.Step}/{p.Steps} loss {p.Loss:F4} {p.ImagesPerSecond:F0} img/s eta "
                            + TimeSpan.FromSeconds(eta).ToString(@"hh\:mm\:ss")
                    );
                })
            );
        }
        T result = default!;
        Bars()
            .Start(ctx =>
            {
                ProgressTask? task = null;
                result = work(
                    new Reporter<GeneratorProgress>(p =>
                    {
                        task ??= ctx.AddTask(Markup.Escape(title), maxValue: p.Steps);
                        task.Value = p.Step;
                        task.Description = Markup.Escape($"{title} loss {p.Loss:F4} {p.ImagesPerSecond:F0} img/s");
                    })
                );
            });
        return result;
    }

    /// <summary>Live bars with percentage, elapsed time, ETA and a spinner.</summary>
    private static Progress Bars() =>
        AnsiConsole
            .Progress()
            .AutoClear(false)
            .Columns(
                new TaskDescriptionColumn(),
                new ProgressBarColumn(),
                new PercentageColumn(),
                new ElapsedTimeColumn(),
                new RemainingTimeColumn(),
                new SpinnerColumn()
            );

    /// <summary>The experiment observer of the CLI: log lines on stdout, each cell's progress as above.</summary>
    public sealed class ExperimentView : IExperimentObserver
    {
        public void Log(string message) => Console.WriteLine(message);

        public T Cell<T>(
            string name,
            Func<IProgress<TrainProgress>, IProgress<(string Phase, int Done, int Total)>, T> work
        ) => ProgressView.Cell(name, work);
    }

    /// <summary>Plain progress lines: training every 5 s, each phase every 10 s and when it ends, with an
    /// ETA.</summary>
    private sealed class PlainLines(string title)
    {
        private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
        private double _lastTrain = -1e9,
            _lastPhase = -1e9,
            _phaseStart;
        private string? _phase;

        public void Training(TrainProgress p)
        {
            double now = _clock.Elapsed.TotalSeconds;
            if (now - _lastTrain < 5 && p.Step != p.TotalSteps)
                return;
            _lastTrain = now;
            double eta = p.Step == 0 ? 0 : now / p.Step * (p.TotalSteps - p.Step);
            Console.WriteLine(
                $"{title}: epoch {p.Epoch}/{p.Epochs} step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} acc "
                    + $"{p.Accuracy:P1} "
                    + $"{p.ImagesPerSecond:F0} img/s lr {p.LearningRate:G3} eta {Eta(eta)}"
            );
        }

        public void Phase((string Phase, int Done, int Total) p)
        {
            double now = _clock.Elapsed.TotalSeconds;
            bool start = p.Phase != _phase,
                end = p.Done >= p.Total;
            if (start)
            {
                _phase = p.Phase;
                _phaseStart = now;
            }
            // A line when a phase starts and ends, and every 5 s in between: never 10 s without one (a CI log reader
            // should not take a long phase for a hang).
            if (!start && !end && now - _lastPhase < 5)
                return;
            _lastPhase = now;
            double elapsed = now - _phaseStart,
                rate = elapsed > 0 ? p.Done / elapsed : 0;
            string eta =
                end ? "done"
                : rate > 0 ? $"eta {Eta((p.Total - p.Done) / rate)}"
                : "eta ?";
            Console.WriteLine($"{title} {p.Phase}: {p.Done}/{p.Total} ({elapsed:F0} s, {eta})");
        }

        private static string Eta(double seconds) => TimeSpan.FromSeconds(Math.Max(0, seconds)).ToString(@"hh\:mm\:ss");
    }
}
