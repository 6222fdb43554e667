using ArchUnitNET.Domain;
using ArchUnitNET.Loader;
using ArchUnitNET.xUnit;
using static ArchUnitNET.Fluent.ArchRuleDefinition;
using static ArchUnitNET.Fluent.Slices.SliceRuleDefinition;

namespace ProxyRobust.Tests;

/// <summary>
/// The layering of DESIGN.md as tests: Cli -> Experiments -> (Proxy, Distributed) -> (Training, Attacks, Certification,
/// Generative, Export) -> (Models, Data) -> Core, with Reporting a renderer that knows Core alone and Native on its
/// own.
/// One test per forbidden dependency (so a failure names the arrow that broke), and one that finds no cycle.
/// </summary>
public sealed class ArchitectureTests
{
    private static readonly Architecture Code = new ArchLoader()
        .LoadAssemblies(typeof(Core.Seeds).Assembly, typeof(Cli.ExitCodes).Assembly)
        .Build();

    /// <summary>Each part and its tier: a part may depend only on lower tiers (plus the exceptions below).</summary>
    private static readonly Dictionary<string, int> Tier = new()
    {
        ["Core"] = 0,
        ["Native"] = 0,
        ["Data"] = 1,
        ["Models"] = 1,
        ["Attacks"] = 2,
        ["Training"] = 2,
        ["Certification"] = 2,
        ["Generative"] = 2,
        ["Export"] = 2,
        ["Proxy"] = 3,
        ["Distributed"] = 3,
        ["Reporting"] = 3,
        ["Experiments"] = 4,
        ["Cli"] = 5,
    };

    /// <summary>Arrows inside a tier that are allowed: training needs attacks (adversarial training), never the
    /// reverse.</summary>
    private static readonly HashSet<(string From, string To)> Sideways = [("Training", "Attacks")];

    /// <summary>Every (from, to) that must not exist.</summary>
    public static TheoryData<string, string> Forbidden()
    {
        var data = new TheoryData<string, string>();
        foreach (var from in Tier.Keys)
        {
            foreach (var to in Tier.Keys)
            {
                if (from == to)
                    continue;
                bool allowed = from switch
                {
                    "Native" => false, // on its own
                    "Reporting" => to == "Core", // renders plain records
                    _ => to != "Native" && to != "Reporting"
                        ? Tier[to] < Tier[from] || Sideways.Contains((from, to))
                        : Tier[from] >= 4, // the torch set-up and the renderers are for experiments and the CLI
                };
                if (!allowed)
                    data.Add(from, to);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Forbidden))]
    public void Part_does_not_depend_on(string from, string to) =>
        Types()
            .That()
            .ResideInNamespace($"ProxyRobust.{from}")
            .Should()
            .NotDependOnAny(Types().That().ResideInNamespace($"ProxyRobust.{to}"))
            .WithoutRequiringPositiveResults()
            .Check(Code);

    [Fact]
    public void Parts_are_free_of_cycles() =>
        Slices().Matching("ProxyRobust.(*)").Should().BeFreeOfCycles().Check(Code);

    /// <summary>A type outside the known parts would escape every rule above.</summary>
    [Fact]
    public void Every_type_lives_in_a_known_part()
    {
        var stray = Code
            .Types.Select(t => t.Namespace.FullName)
            .Where(ns => ns.StartsWith("ProxyRobust", StringComparison.Ordinal))
            .Distinct()
            .Where(ns => ns.Split('.') is not ["ProxyRobust", var part] || !Tier.ContainsKey(part))
            .ToList();
        Assert.True(stray.Count == 0, $"namespaces outside the parts of DESIGN.md: {string.Join(", ", stray)}");
    }
}
