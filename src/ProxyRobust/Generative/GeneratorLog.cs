using System.Diagnostics;
using System.Text.Json.Nodes;

namespace ProxyRobust.Generative;

/// <summary>
/// The bookkeeping both generator trainers do after a step: the mean loss into the run's history every 100 steps, and
/// progress (rate, and an ETA at this process's pace) at least every 10 s, since one step of a large model can take
/// seconds. The loss shown is the mean since the last history entry.
/// </summary>
internal sealed class GeneratorLog(
    long steps,
    long firstStep,
    JsonArray history,
    string lossName,
    IProgress<GeneratorProgress>? progress
)
{
    private readonly Stopwatch rate = Stopwatch.StartNew();
    private readonly Stopwatch sinceReport = Stopwatch.StartNew();
    private double lossSum;
    private long lossCount,
        images;

    public void Add(double loss, long batchImages)
    {
        lossSum += loss;
        lossCount++;
        images += batchImages;
    }

    public void AfterStep(long step)
    {
        double mean = lossSum / Math.Max(1, lossCount);
        bool historyPoint = step % 100 == 0 || step == steps;
        if (historyPoint || sinceReport.Elapsed.TotalSeconds >= 10)
        {
            double seconds = rate.Elapsed.TotalSeconds;
            double eta = (steps - step) * seconds / Math.Max(1, step - firstStep);
            progress?.Report(new GeneratorProgress(step, steps, mean, images / seconds, eta));
            sinceReport.Restart();
        }
        if (historyPoint)
        {
            history.Add(new JsonObject { ["step"] = step, [lossName] = mean });
            (lossSum, lossCount) = (0, 0);
        }
    }
}
