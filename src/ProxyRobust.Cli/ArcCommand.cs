using System.CommandLine;
using System.Globalization;
using ProxyRobust.Attacks;
using ProxyRobust.Experiments;

namespace ProxyRobust.Cli;

/// <summary>`arc`: rank proxies by how well adversarially trained discriminators tell them from real data.</summary>
internal static class ArcCommand
{
    public static Command Create(CancellationToken cancel)
    {
        var real = Shared.Data("real data set (train split for the discriminators, test split for testing them)");
        var (synthetic, names) = Shared.ProxyOptions(
            "proxy stores to rank (images .npy with labels beside, or any data set the tool reads)"
        );
        var output = new Option<string>("--out")
        {
            Description = "folder: arc.md, arc.json, arc.png, and the cached discriminators",
            Required = true,
        };
        var budgets = new Option<string?>("--budgets")
        {
            Description = "budgets from 0, comma-separated (default: 0 to 0.2 l-inf for 28x28 gray, 0 to 16/255 else)",
        };
        budgets.Validators.Add(r =>
        {
            var text = r.GetValueOrDefault<string?>();
            if (text is not null && ParseBudgets(text) is null)
                r.AddError($"--budgets takes increasing numbers from 0 separated by commas, not '{text}'");
        });
        var norm = new Option<string>("--norm")
        {
            Description = "threat model of the discriminators",
            DefaultValueFactory = _ => "linf",
        }.AcceptOnlyFromAmong("linf", "l2");
        var trainPerSide = new Option<int>("--train-per-side")
        {
            Description = "training images per side (real, synthetic) of each discriminator",
            DefaultValueFactory = _ => 2000,
        }.Positive();
        var testPerSide = new Option<int>("--test-per-side")
        {
            Description = "test images per side",
            DefaultValueFactory = _ => 1000,
        }.Positive();
        var epochs = new Option<int>("--epochs")
        {
            Description = "training epochs of each discriminator",
            DefaultValueFactory = _ => 10,
        }.Positive();
        var seed = Shared.Seed();
        var device = Shared.Device();
        var threads = Shared.Threads();
        var cmd = new Command(
            "arc",
            "Rank proxies by ARC: the area under robust real-vs-synthetic discrimination accuracy against the budget "
                + "(lower: closer to the real data). Discriminators are cached; adding a proxy trains only its own."
        )
        {
            real,
            synthetic,
            names,
            output,
            budgets,
            norm,
            trainPerSide,
            testPerSide,
            epochs,
            seed,
            device,
            threads,
        };
        cmd.SetAction(p =>
            ExitCodes.Guard(() =>
            {
                var proxies = Shared.Proxies(p.GetValue(synthetic)!, p.GetValue(names));
                var budgetText = p.GetValue(budgets);
                var request = new ArcRequest
                {
                    Real = p.GetValue(real),
                    Proxies = proxies,
                    Output = p.GetValue(output)!,
                    Budgets = budgetText is null ? null : ParseBudgets(budgetText),
                    Norm = p.GetValue(norm) == "l2" ? Norm.L2 : Norm.Linf,
                    TrainPerSide = p.GetValue(trainPerSide),
                    TestPerSide = p.GetValue(testPerSide),
                    Epochs = p.GetValue(epochs),
                    Seed = p.GetValue(seed),
                    Device = p.GetValue(device)!,
                };
                Shared.StartTorch(p.GetValue(threads));
                var report = ProgressView.Stages("arc", progress => ArcRun.Execute(request, progress, cancel));
                Shared.Table(
                    "ARC (lower: closer to the real data)",
                    report
                        .Proxies.OrderBy(x => x.Arc)
                        .Select(x => (x.Name, x.Arc.ToString("F3", CultureInfo.InvariantCulture)))
                        .Append(("report", report.Markdown))
                );
                return ExitCodes.Ok;
            })
        );
        return cmd;
    }

    private static double[]? ParseBudgets(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var values = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]))
                return null;
        if (values.Length < 2 || values[0] != 0)
            return null;
        for (int i = 1; i < values.Length; i++)
            if (!(values[i] > values[i - 1]))
                return null;
        return values;
    }
}
