using System.CommandLine;
using ProxyRobust.Data;
using ProxyRobust.Reporting;

namespace ProxyRobust.Cli;

internal static class DataCommand
{
    public static Command Create()
    {
        var data = Shared.Data("data set: 'fashion-mnist', an IDX/CIFAR/image folder, or an images .npy/.bin");
        var labels = Shared.Labels();
        var split = new Option<string>("--split") { Description = "train or test", DefaultValueFactory = _ => "train" };
        var grid = new Option<string>("--grid") { Description = "where to write a PNG grid of samples (one row per class)", DefaultValueFactory = _ => "samples.png" };
        var info = new Command("info", "Shape, classes, counts and a PNG grid of samples of a data set.") { data, labels, split, grid };
        info.SetAction(p => ExitCodes.Guard(() =>
        {
            using var ds = DatasetLoader.Load(p.GetValue(data), Shared.ParseSplit(p.GetValue(split)!), p.GetValue(labels));
            var counts = ds.ClassCounts();
            var rows = new List<(string, string)>
            {
                ("source", ds.Source),
                ("images", ds.Count.ToString()),
                ("shape (H x W x C)", $"{ds.Height} x {ds.Width} x {ds.Channels}"),
                ("classes", ds.NumClasses.ToString()),
            };
            for (int c = 0; c < ds.NumClasses; c++) rows.Add(($"  {c}: {ds.ClassNames[c]}", counts[c].ToString()));
            var (mean, std) = DatasetStats.ChannelMeanStd(ds);
            rows.Add(("channel mean", string.Join(", ", mean.Select(m => m.ToString("F4")))));
            rows.Add(("channel std", string.Join(", ", std.Select(s => s.ToString("F4")))));
            var gridPath = p.GetValue(grid)!;
            ImageGrid.WritePng(ds.SamplesPerClass(10), ds.Height, ds.Width, ds.Channels, gridPath);
            rows.Add(("sample grid", gridPath));
            Shared.Table("data", rows);
            return ExitCodes.Ok;
        }));
        return new Command("data", "Inspect data sets.") { info };
    }
}
