using System.CommandLine;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

internal static class DataCommand
{
    public static Command Create()
    {
        var data = Shared.Data("data set: 'fashion-mnist', an IDX/CIFAR/image folder, or an images .npy/.bin");
        var labels = Shared.Labels();
        var classes = Shared.Classes();
        var split = Shared.Split("train");
        var grid = new Option<string>("--grid")
        {
            Description = "where to write a PNG grid of samples (one row per class)",
            DefaultValueFactory = _ => "samples.png",
        };
        var info = new Command("info", "Shape, classes, counts and a PNG grid of samples of a data set.")
        {
            data,
            labels,
            classes,
            split,
            grid,
        };
        info.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var d = DataInfoRun.Execute(
                    new DataInfoRequest(
                        p.GetValue(data),
                        Shared.SplitOf(p.GetValue(split)!),
                        p.GetValue(labels),
                        p.GetValue(grid)!,
                        p.GetValue(classes)
                    )
                );
                var rows = new List<(string, string)>
                {
                    ("source", d.Source),
                    ("images", d.Images.ToString()),
                    ("shape (H x W x C)", $"{d.Height} x {d.Width} x {d.Channels}"),
                    ("classes", d.ClassNames.Count.ToString()),
                };
                for (int c = 0; c < d.ClassNames.Count; c++)
                    rows.Add(($"  {c}: {d.ClassNames[c]}", d.ClassCounts[c].ToString()));
                rows.Add(("channel mean", string.Join(", ", d.ChannelMean.Select(m => m.ToString("F4")))));
                rows.Add(("channel std", string.Join(", ", d.ChannelStd.Select(s => s.ToString("F4")))));
                rows.Add(("sample grid", d.Grid));
                Shared.Table("data", rows);
                return ExitCodes.Ok;
            })
        );
        return new Command("data", "Inspect data sets.") { info };
    }
}
