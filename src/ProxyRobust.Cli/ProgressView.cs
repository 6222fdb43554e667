using ProxyRobust.Training;
using Spectre.Console;

namespace ProxyRobust.Cli;

/// <summary>Renders training progress: a bar with rate and ETA on a terminal, a line every few seconds otherwise (logs, CI).</summary>
internal static class ProgressView
{
    public static T Train<T>(string title, Func<IProgress<TrainProgress>, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            double lastPrint = -1e9;
            return work(new Sync<TrainProgress>(p =>
            {
                if (clock.Elapsed.TotalSeconds - lastPrint < 5 && p.Step != p.TotalSteps) return;
                lastPrint = clock.Elapsed.TotalSeconds;
                double eta = p.Step == 0 ? 0 : clock.Elapsed.TotalSeconds / p.Step * (p.TotalSteps - p.Step);
                Console.WriteLine($"{title}: epoch {p.Epoch}/{p.Epochs} step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} acc {p.Accuracy:P1} " +
                                  $"{p.ImagesPerSecond:F0} img/s lr {p.LearningRate:G3} eta {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}");
            }));
        }
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                     new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(title);
                result = work(new Sync<TrainProgress>(p =>
                {
                    task.MaxValue = p.TotalSteps;
                    task.Value = p.Step;
                    task.Description = Markup.Escape(
                        $"{title} ep {p.Epoch}/{p.Epochs} loss {p.Loss:F3} acc {p.Accuracy:P1} {p.ImagesPerSecond:F0} img/s");
                }));
            });
        return result;
    }

    /// <summary>Progress over a known number of items (evaluation, labelling).</summary>
    public static T Count<T>(string title, int total, Func<IProgress<(int Done, int Total)>, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            double lastPrint = 0;
            return work(new Sync<(int Done, int Total)>(p =>
            {
                if (clock.Elapsed.TotalSeconds - lastPrint < 10 || p.Done == p.Total) return;
                lastPrint = clock.Elapsed.TotalSeconds;
                Console.WriteLine($"{title}: {p.Done}/{p.Total} ({p.Done / clock.Elapsed.TotalSeconds:F1}/s)");
            }));
        }
        T result = default!;
        AnsiConsole.Progress().AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(title, maxValue: total);
                result = work(new Sync<(int Done, int Total)>(p => task.Value = p.Done));
            });
        return result;
    }

    /// <summary>Progress of a sequence of named stages, each over its own number of items: one bar per stage (AutoAttack).</summary>
    public static T Stages<T>(string title, Func<IProgress<(string Stage, int Done, int Total)>, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            double lastPrint = 0;
            return work(new Sync<(string Stage, int Done, int Total)>(p =>
            {
                if (clock.Elapsed.TotalSeconds - lastPrint < 10 && p.Done != p.Total) return;
                lastPrint = clock.Elapsed.TotalSeconds;
                Console.WriteLine($"{title} {p.Stage}: {p.Done}/{p.Total} ({clock.Elapsed.TotalSeconds:F0} s)");
            }));
        }
        T result = default!;
        AnsiConsole.Progress().AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                result = work(new Sync<(string Stage, int Done, int Total)>(p =>
                {
                    if (!tasks.TryGetValue(p.Stage, out var task))
                    {
                        foreach (var t in tasks.Values) t.StopTask();
                        tasks[p.Stage] = task = ctx.AddTask(Markup.Escape($"{title} {p.Stage}"), maxValue: Math.Max(1, p.Total));
                    }
                    task.MaxValue = Math.Max(1, p.Total);
                    task.Value = p.Total == 0 ? 1 : p.Done;
                }));
            });
        return result;
    }

    /// <summary>Reports synchronously on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class Sync<TValue>(Action<TValue> report) : IProgress<TValue>
    {
        public void Report(TValue value) => report(value);
    }
}
