using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using ProxyRobust.Core;

namespace ProxyRobust.Reporting;

/// <summary>One attack's line on a report card: the points still robust after it, how many it attacked, its
/// time, and which points (indices into the evaluated points) it broke that the attacks before it had not.</summary>
public sealed record CardStage(
    string Attack,
    string Description,
    int RobustAfter,
    int Attacked,
    double Seconds,
    IReadOnlyList<int>? Broken = null
);

/// <summary>The PGD baseline on a report card.</summary>
public sealed record CardPgd(string AttackName, int Correct, double Seconds);

/// <summary>
/// AutoAttack's outcome on a report card (plain numbers: the card renders, it does not compute). <paramref
/// name="RobustPoints"/>: per point, 1 when no component broke it (for paired comparisons).
/// </summary>
public sealed record CardAutoAttack(
    int Total,
    int CleanCorrect,
    IReadOnlyList<CardStage> Stages,
    IReadOnlyList<string> Warnings,
    string? RobustPoints = null
)
{
    public int RobustCorrect => Stages.Count == 0 ? CleanCorrect : Stages[^1].RobustAfter;
    public double CleanAccuracy => (double)CleanCorrect / Total;
    public double RobustAccuracy => (double)RobustCorrect / Total;
}

/// <summary>
/// A robustness report card: clean accuracy, PGD, and AutoAttack per component on the same points, with Wilson 95%
/// intervals, as Markdown (one RobustBench-style leaderboard row plus details) and JSON. <paramref name="Threat"/> is
/// the threat model as people read it ("l-inf eps=0.1"), <paramref name="Norm"/> and <paramref name="Epsilon"/> as
/// machines do.
/// </summary>
public sealed record RobustnessCard(
    string Model,
    string Checkpoint,
    string Data,
    string Threat,
    string Norm,
    double Epsilon,
    string Version,
    long Seed,
    CardAutoAttack AutoAttack,
    CardPgd? Pgd
)
{
    private static string Pct(double v) => (100 * v).ToString("F2", CultureInfo.InvariantCulture);

    private static string Interval(int correct, int total)
    {
        var (lo, hi) = Stats.Wilson95(correct, total);
        return $"{Pct((double)correct / total)} ({Pct(lo)}-{Pct(hi)})";
    }

    public string ToMarkdown()
    {
        var aa = AutoAttack;
        var sb = new StringBuilder();
        sb.AppendLine($"# Robustness report: {Model}");
        sb.AppendLine();
        sb.AppendLine(
            $"Checkpoint `{Checkpoint}`, data {Data}, {aa.Total} points, threat model {Threat}, AutoAttack "
                + $"{Version}, seed {Seed}."
        );
        sb.AppendLine();
        sb.AppendLine(
            "| Model | Clean | "
                + (Pgd is not null ? $"{Pgd.AttackName.Split(' ')[0]} | " : "")
                + "AutoAttack | Threat | Points |"
        );
        sb.AppendLine("|---|---|" + (Pgd is not null ? "---|" : "") + "---|---|---|");
        sb.AppendLine(
            $"| {Model} | {Pct(aa.CleanAccuracy)} | "
                + (Pgd is { } p ? $"{Pct((double)p.Correct / aa.Total)} | " : "")
                + $"{Pct(aa.RobustAccuracy)} | {Threat} | {aa.Total} |"
        );
        sb.AppendLine();
        sb.AppendLine(
            "Accuracy in % with Wilson 95% intervals; each AutoAttack row is the robust accuracy after that component"
        );
        sb.AppendLine("(components run in order, each only on the points still robust).");
        sb.AppendLine();
        sb.AppendLine("| Evaluation | Accuracy % (95% CI) | Points attacked | Newly broken | Time (s) |");
        sb.AppendLine("|---|---|---|---|---|");
        sb.AppendLine($"| clean | {Interval(aa.CleanCorrect, aa.Total)} | | | |");
        if (Pgd is { } pr)
            sb.AppendLine(
                $"| {Pgd.AttackName} | {Interval(pr.Correct, aa.Total)} | {aa.CleanCorrect} | | "
                    + $"{Pgd.Seconds.ToString("F1", CultureInfo.InvariantCulture)} |"
            );
        foreach (var s in aa.Stages)
            sb.AppendLine(
                $"| after {s.Description} | {Interval(s.RobustAfter, aa.Total)} | {s.Attacked} | "
                    + $"{s.Attacked - s.RobustAfter} | {s.Seconds.ToString("F1", CultureInfo.InvariantCulture)} |"
            );
        sb.AppendLine(
            $"| **AutoAttack ({Version})** | **{Interval(aa.RobustCorrect, aa.Total)}** | | | "
                + $"{aa.Stages.Sum(s => s.Seconds).ToString("F1", CultureInfo.InvariantCulture)} |"
        );
        if (aa.Stages.Any(s => s.Broken is { Count: > 0 }))
        {
            sb.AppendLine();
            sb.AppendLine(
                "Points each component broke that the components before it had not (indices into the points):"
            );
            sb.AppendLine();
            foreach (var s in aa.Stages.Where(s => s.Broken is not null))
                sb.AppendLine($"- {s.Attack}: {(s.Broken!.Count == 0 ? "none" : string.Join(", ", s.Broken))}");
        }
        if (aa.Warnings.Count > 0)
        {
            sb.AppendLine();
            foreach (var w in aa.Warnings)
                sb.AppendLine($"- Warning: {w}");
        }
        if (Pgd is { } pgd && pgd.Correct - aa.RobustCorrect > Math.Max(3, 0.03 * aa.Total))
        {
            sb.AppendLine();
            sb.AppendLine(
                $"- Note: AutoAttack is {Pct((double)(pgd.Correct - aa.RobustCorrect) / aa.Total)} points below PGD: "
                    + "large gaps usually mean the PGD number overestimated robustness (gradient masking)."
            );
        }
        return sb.ToString();
    }

    public JsonObject ToJson()
    {
        var aa = AutoAttack;
        JsonArray Ci(int c)
        {
            var (lo, hi) = Stats.Wilson95(c, aa.Total);
            return new JsonArray(lo, hi);
        }
        return new JsonObject
        {
            ["model"] = Model,
            ["checkpoint"] = Checkpoint,
            ["data"] = Data,
            ["points"] = aa.Total,
            ["threat"] = new JsonObject { ["norm"] = Norm, ["eps"] = Epsilon },
            ["version"] = Version,
            ["seed"] = Seed,
            ["clean"] = new JsonObject
            {
                ["accuracy"] = aa.CleanAccuracy,
                ["correct"] = aa.CleanCorrect,
                ["wilson95"] = Ci(aa.CleanCorrect),
            },
            ["pgd"] = Pgd is { } p
                ? new JsonObject
                {
                    ["attack"] = Pgd.AttackName,
                    ["accuracy"] = (double)p.Correct / aa.Total,
                    ["correct"] = p.Correct,
                    ["wilson95"] = Ci(p.Correct),
                    ["seconds"] = Pgd.Seconds,
                }
                : null,
            ["autoattack"] = new JsonObject
            {
                ["accuracy"] = aa.RobustAccuracy,
                ["correct"] = aa.RobustCorrect,
                ["wilson95"] = Ci(aa.RobustCorrect),
                ["seconds"] = aa.Stages.Sum(s => s.Seconds),
                ["stages"] = new JsonArray(
                    aa.Stages.Select(s =>
                            (JsonNode)
                                new JsonObject
                                {
                                    ["attack"] = s.Attack,
                                    ["description"] = s.Description,
                                    ["robustAfter"] = s.RobustAfter,
                                    ["accuracyAfter"] = (double)s.RobustAfter / aa.Total,
                                    ["attacked"] = s.Attacked,
                                    ["seconds"] = s.Seconds,
                                    ["broken"] = s.Broken is null
                                        ? null
                                        : new JsonArray(s.Broken.Select(i => (JsonNode)i).ToArray()),
                                }
                        )
                        .ToArray()
                ),
                ["warnings"] = new JsonArray(aa.Warnings.Select(w => (JsonNode)JsonValue.Create(w)).ToArray()),
                ["robustPoints"] = aa.RobustPoints,
            },
        };
    }
}
