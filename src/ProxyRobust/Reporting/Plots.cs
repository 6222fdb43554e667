namespace ProxyRobust.Reporting;

/// <summary>PNG plots for people (ScottPlot); every plot has labelled axes, a title and a legend.</summary>
public static class Plots
{
    /// <summary>Certified accuracy against l-2 radius, one line per model (Cohen et al.'s standard figure).</summary>
    public static void CertifiedAccuracy(IEnumerable<(string Label, IReadOnlyList<(double Radius, double Accuracy)> Curve)> models,
                                         string path, string title = "Certified accuracy (randomized smoothing)")
    {
        var plot = new ScottPlot.Plot();
        foreach (var (label, curve) in models)
        {
            var line = plot.Add.Scatter(curve.Select(c => c.Radius).ToArray(), curve.Select(c => 100 * c.Accuracy).ToArray());
            line.LegendText = label;
            line.LineWidth = 2;
            line.MarkerSize = 5;
        }
        plot.Title(title);
        plot.XLabel("l2 radius");
        plot.YLabel("certified accuracy (%)");
        plot.Axes.SetLimitsY(0, 100);
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        var bytes = plot.GetImageBytes(800, 500, ScottPlot.ImageFormat.Png);
        AtomicFile.WriteAllBytes(path, bytes);
    }
}
