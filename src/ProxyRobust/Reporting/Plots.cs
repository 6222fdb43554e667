using ProxyRobust.Core;

namespace ProxyRobust.Reporting;

/// <summary>PNG plots for people (ScottPlot); every plot has labelled axes, a title and a legend.</summary>
public static class Plots
{
    /// <summary>Certified accuracy against l-2 radius, one line per model (Cohen et al.'s standard figure).</summary>
    public static void CertifiedAccuracy(
        IEnumerable<(string Label, IReadOnlyList<(double Radius, double Accuracy)> Curve)> models,
        string path,
        string title = "Certified accuracy (randomized smoothing)"
    )
    {
        var plot = new ScottPlot.Plot();
        AddLines(
            plot,
            models.Select(m =>
                (m.Label, (IReadOnlyList<(double, double)>)m.Curve.Select(c => (c.Radius, 100 * c.Accuracy)).ToList())
            ),
            markerSize: 5
        );
        plot.Axes.SetLimitsY(0, 100);
        Finish(plot, title, "l2 radius", "certified accuracy (%)", ScottPlot.Alignment.UpperRight, path);
    }

    private static void Save(ScottPlot.Plot plot, string path, int width = 800, int height = 500) =>
        AtomicFile.WriteAllBytes(path, plot.GetImageBytes(width, height, ScottPlot.ImageFormat.Png));

    /// <summary>Lines (x, y) per series, e.g. validation accuracy per epoch.</summary>
    public static void Lines(
        IEnumerable<(string Label, IReadOnlyList<(double X, double Y)> Points)> series,
        string path,
        string title,
        string xLabel,
        string yLabel
    )
    {
        var plot = new ScottPlot.Plot();
        AddLines(plot, series.Where(s => s.Points.Count > 0), markerSize: 0);
        plot.Axes.SetLimitsY(0, 100);
        Finish(plot, title, xLabel, yLabel, ScottPlot.Alignment.LowerRight, path);
    }

    private static void AddLines(
        ScottPlot.Plot plot,
        IEnumerable<(string Label, IReadOnlyList<(double X, double Y)> Points)> series,
        float markerSize
    )
    {
        foreach (var (label, points) in series)
        {
            var line = plot.Add.Scatter(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray());
            line.LegendText = label;
            line.LineWidth = 2;
            line.MarkerSize = markerSize;
        }
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

    /// <summary>Grouped bars with their values printed on top (one group per metric, one bar per model).</summary>
    public static void GroupedBars(
        IReadOnlyList<(string Group, IReadOnlyList<(string Series, double Value)> Bars)> groups,
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
            for (int g = 0; g < groups.Count; g++)
            {
                double v = groups[g].Bars.FirstOrDefault(b => b.Series == seriesNames[s]).Value;
                if (double.IsNaN(v))
                    continue;
                bars.Add(
                    new ScottPlot.Bar
                    {
                        Position = g * (seriesNames.Count + 1) + s,
                        Value = v,
                        FillColor = palette.GetColor(s),
                        Label = v.ToString("F1", System.Globalization.CultureInfo.InvariantCulture),
                    }
                );
            }
            var plotted = plot.Add.Bars(bars);
            plotted.LegendText = seriesNames[s];
            plotted.ValueLabelStyle.FontSize = 14;
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
    /// Accuracy against a number of images on a log axis, one line per series; 0 images is drawn one decade left of the
    /// smallest positive count and labelled "0".
    /// </summary>
    public static void AgainstImageCount(
        IEnumerable<(string Label, IReadOnlyList<(double Images, double Accuracy)> Points)> series,
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
                (s.Label, (IReadOnlyList<(double, double)>)s.Points.Select(p => (X(p.Images), p.Accuracy)).ToList())
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

    /// <summary>Clean against robust accuracy, one labelled point per model: the accuracy-robustness
    /// trade-off.</summary>
    public static void Tradeoff(IReadOnlyList<(string Label, double Clean, double Robust)> points, string path)
    {
        var plot = new ScottPlot.Plot();
        var scatter = plot.Add.ScatterPoints(
            points.Select(p => p.Clean).ToArray(),
            points.Select(p => p.Robust).ToArray()
        );
        scatter.MarkerSize = 8;
        scatter.LegendText = "models (real r + proxy p images)";
        foreach (var p in points)
        {
            var text = plot.Add.Text(p.Label, p.Clean, p.Robust);
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
