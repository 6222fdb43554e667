using ProxyRobust.Core;

namespace ProxyRobust.Reporting;

/// <summary>A measured value with its 95% interval (Low and High NaN when there is none), in the plot's
/// units.</summary>
public sealed record Estimate(double Value, double Low = double.NaN, double High = double.NaN)
{
    public Estimate Scaled(double factor) => new(Value * factor, Low * factor, High * factor);

    /// <summary>A fraction with the Wilson 95% interval of <paramref name="correct"/> of <paramref
    /// name="total"/>.</summary>
    public static Estimate Wilson(double fraction, int correct, int total)
    {
        if (total == 0 || double.IsNaN(fraction))
            return new Estimate(fraction);
        var (low, high) = Stats.Wilson95(correct, total);
        return new Estimate(fraction, low, high);
    }

    public bool HasInterval => !double.IsNaN(Low) && !double.IsNaN(High);
}

/// <summary>
/// PNG plots for people (ScottPlot); every plot has labelled axes, a title and a legend, and accuracies carry their 95%
/// intervals as error bars (computed by the caller: plots render, they do not compute).
/// </summary>
public static class Plots
{
    /// <summary>Certified accuracy (a fraction) against l-2 radius, one line per model (Cohen et al.'s standard
    /// figure).</summary>
    public static void CertifiedAccuracy(
        IEnumerable<(string Label, IReadOnlyList<(double Radius, Estimate Accuracy)> Curve)> models,
        string path,
        string title = "Certified accuracy (randomized smoothing)"
    )
    {
        var plot = new ScottPlot.Plot();
        AddLines(
            plot,
            models.Select(m =>
                (
                    m.Label,
                    (IReadOnlyList<(double, Estimate)>)m.Curve.Select(c => (c.Radius, c.Accuracy.Scaled(100))).ToList()
                )
            ),
            markerSize: 5
        );
        plot.Axes.SetLimitsY(0, 100);
        Finish(plot, title, "l2 radius", "certified accuracy (%, 95% interval)", ScottPlot.Alignment.UpperRight, path);
    }

    private static void Save(ScottPlot.Plot plot, string path, int width = 800, int height = 500) =>
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png));

    /// <summary>Lines (x, y) per series, e.g. validation accuracy per epoch (a trace: no intervals).</summary>
    public static void Lines(
        IEnumerable<(string Label, IReadOnlyList<(double X, double Y)> Points)> series,
        string path,
        string title,
        string xLabel,
        string yLabel
    )
    {
        var plot = new ScottPlot.Plot();
        AddLines(
            plot,
            series
                .Where(s => s.Points.Count > 0)
                .Select(s =>
                    (
                        s.Label,
                        (IReadOnlyList<(double, Estimate)>)s.Points.Select(p => (p.X, new Estimate(p.Y))).ToList()
                    )
                ),
            markerSize: 0
        );
        plot.Axes.SetLimitsY(0, 100);
        Finish(plot, title, xLabel, yLabel, ScottPlot.Alignment.LowerRight, path);
    }

    private static void AddLines(
        ScottPlot.Plot plot,
        IEnumerable<(string Label, IReadOnlyList<(double X, Estimate Y)> Points)> series,
        float markerSize
    )
    {
        foreach (var (label, points) in series)
        {
            var xs = points.Select(p => p.X).ToArray();
            var line = plot.Add.Scatter(xs, points.Select(p => p.Y.Value).ToArray());
            line.LegendText = label;
            line.LineWidth = 2;
            line.MarkerSize = markerSize;
            AddErrorBars(plot, xs, points.Select(p => p.Y).ToList(), line.Color);
        }
    }

    /// <summary>Vertical 95% error bars at <paramref name="xs"/> for the estimates that have an interval.</summary>
    private static void AddErrorBars(
        ScottPlot.Plot plot,
        IReadOnlyList<double> xs,
        IReadOnlyList<Estimate> ys,
        ScottPlot.Color color
    )
    {
        var withInterval = Enumerable.Range(0, xs.Count).Where(i => ys[i].HasInterval).ToList();
        if (withInterval.Count == 0)
            return;
        var bars = new ScottPlot.Plottables.ErrorBar(
            withInterval.Select(i => xs[i]).ToList(),
            withInterval.Select(i => ys[i].Value).ToList(),
            null,
            null,
            withInterval.Select(i => ys[i].High - ys[i].Value).ToList(),
            withInterval.Select(i => ys[i].Value - ys[i].Low).ToList()
        )
        {
            Color = color,
            LineWidth = 1.5f,
        };
        plot.Add.Plottable(bars);
    }

    private static void Finish(
        ScottPlot.Plot plot,
        string title,
        string xLabel,
        string yLabel,
        ScottPlot.Alignment legend,
        string path
    )
    {
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(legend);
        Save(plot, path);
    }

    /// <summary>Grouped bars with their values printed on top and their 95% intervals (one group per metric, one bar
    /// per
    /// model).</summary>
    public static void GroupedBars(
        IReadOnlyList<(string Group, IReadOnlyList<(string Series, Estimate Value)> Bars)> groups,
        string path,
        string title,
        string yLabel
    )
    {
        var plot = new ScottPlot.Plot();
        var seriesNames = groups.SelectMany(g => g.Bars.Select(b => b.Series)).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        for (int s = 0; s < seriesNames.Count; s++)
        {
            var bars = new List<ScottPlot.Bar>();
            var positions = new List<double>();
            var estimates = new List<Estimate>();
            for (int g = 0; g < groups.Count; g++)
            {
                var e = groups[g].Bars.FirstOrDefault(b => b.Series == seriesNames[s]).Value;
                if (e is null || double.IsNaN(e.Value))
                    continue;
                double position = g * (seriesNames.Count + 1) + s;
                bars.Add(
                    new ScottPlot.Bar
                    {
                        Position = position,
                        Value = e.Value,
                        FillColor = palette.GetColor(s),
                        Label = e.Value.ToString("F1", System.Globalization.CultureInfo.InvariantCulture),
                    }
                );
                positions.Add(position);
                estimates.Add(e);
            }
            var plotted = plot.Add.Bars(bars);
            plotted.LegendText = seriesNames[s];
            plotted.ValueLabelStyle.FontSize = 14;
            AddErrorBars(plot, positions, estimates, ScottPlot.Colors.Black);
        }
        var ticks = groups
            .Select((g, i) => new ScottPlot.Tick(i * (seriesNames.Count + 1) + (seriesNames.Count - 1) / 2.0, g.Group))
            .ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Title(title);
        plot.YLabel(yLabel);
        plot.Axes.SetLimitsY(0, 105);
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        Save(plot, path);
    }

    /// <summary>
    /// Accuracy against a number of images on a log axis, one line per series with 95% error bars; 0 images is drawn
    /// one
    /// decade left of the smallest positive count and labelled "0".
    /// </summary>
    public static void AgainstImageCount(
        IEnumerable<(string Label, IReadOnlyList<(double Images, Estimate Accuracy)> Points)> series,
        string path,
        string title,
        string yLabel,
        string xLabel = "proxy images (log scale)"
    )
    {
        var all = series.ToList();
        double smallest = all.SelectMany(s => s.Points)
            .Select(p => p.Images)
            .Where(n => n > 0)
            .DefaultIfEmpty(1000)
            .Min();
        double X(double n) => n > 0 ? Math.Log10(n) : Math.Log10(smallest) - 1;
        var plot = new ScottPlot.Plot();
        AddLines(
            plot,
            all.Select(s =>
                (s.Label, (IReadOnlyList<(double, Estimate)>)s.Points.Select(p => (X(p.Images), p.Accuracy)).ToList())
            ),
            markerSize: 7
        );
        var counts = all.SelectMany(s => s.Points).Select(p => p.Images).Distinct().Order().ToList();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            counts
                .Select(n => new ScottPlot.Tick(
                    X(n),
                    n.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)
                ))
                .ToArray()
        );
        Finish(plot, title, xLabel, yLabel, ScottPlot.Alignment.UpperLeft, path);
    }

    /// <summary>Curves with 95% error bars against a linear x axis, one per series (e.g. robust discrimination
    /// accuracy against eps, one per proxy).</summary>
    public static void Curves(
        IEnumerable<(string Label, IReadOnlyList<(double X, Estimate Y)> Points)> series,
        string path,
        string title,
        string xLabel,
        string yLabel
    )
    {
        var plot = new ScottPlot.Plot();
        AddLines(plot, series.Select(s => (s.Label, s.Points)), markerSize: 7);
        Finish(plot, title, xLabel, yLabel, ScottPlot.Alignment.UpperRight, path);
    }

    /// <summary>Clean against robust accuracy with 95% intervals on both, one labelled point per model: the
    /// accuracy-robustness trade-off.</summary>
    public static void Tradeoff(IReadOnlyList<(string Label, Estimate Clean, Estimate Robust)> points, string path)
    {
        var plot = new ScottPlot.Plot();
        var scatter = plot.Add.ScatterPoints(
            points.Select(p => p.Clean.Value).ToArray(),
            points.Select(p => p.Robust.Value).ToArray()
        );
        scatter.MarkerSize = 8;
        scatter.LegendText = "models (real r + proxy p images), 95% intervals";
        var both = points.Where(p => p.Clean.HasInterval && p.Robust.HasInterval).ToList();
        if (both.Count > 0)
        {
            var bars = new ScottPlot.Plottables.ErrorBar(
                both.Select(p => p.Clean.Value).ToList(),
                both.Select(p => p.Robust.Value).ToList(),
                both.Select(p => p.Clean.High - p.Clean.Value).ToList(),
                both.Select(p => p.Clean.Value - p.Clean.Low).ToList(),
                both.Select(p => p.Robust.High - p.Robust.Value).ToList(),
                both.Select(p => p.Robust.Value - p.Robust.Low).ToList()
            )
            {
                Color = scatter.Color,
            };
            plot.Add.Plottable(bars);
        }
        foreach (var p in points)
        {
            var text = plot.Add.Text(p.Label, p.Clean.Value, p.Robust.Value);
            text.LabelFontSize = 11;
            text.OffsetX = 6;
        }
        plot.Axes.Margins(left: 0.08, right: 0.22, bottom: 0.1, top: 0.1); // room for the labels right of the points
        Finish(
            plot,
            "Accuracy-robustness trade-off",
            "clean accuracy (%)",
            "PGD-20 robust accuracy (%)",
            ScottPlot.Alignment.LowerRight,
            path
        );
    }
}
