namespace ProxyRobust.Tests;

/// <summary>
/// The style rules a formatter cannot enforce. CSharpier lays out code within .editorconfig's max_line_length
/// but leaves comments and string literals as written; this holds them to the same width.
/// </summary>
public sealed class StyleTests
{
    private const int MaxLineLength = 120;

    [Fact]
    public void Source_lines_fit_in_the_editorconfig_width()
    {
        var root = AppContext.BaseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "ProxyRobust.slnx")))
            root = Path.GetDirectoryName(root);
        Assert.True(root is not null, "repository root not found above the test binaries");
        var config = File.ReadAllText(Path.Combine(root, ".editorconfig"));
        Assert.Contains($"max_line_length = {MaxLineLength}", config);
        var tooLong = new[] { "src", "tests", "bench", "build" }
            .SelectMany(dir => Directory.EnumerateFiles(Path.Combine(root, dir), "*.cs", SearchOption.AllDirectories))
            .Where(f =>
                !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")
                && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}")
            )
            .SelectMany(f =>
                File.ReadLines(f).Select((line, i) => (File: Path.GetRelativePath(root, f), Line: i + 1, line.Length))
            )
            .Where(l => l.Length > MaxLineLength)
            .Select(l => $"{l.File}:{l.Line} ({l.Length})")
            .ToList();
        Assert.True(
            tooLong.Count == 0,
            $"lines over {MaxLineLength} characters: {string.Join(", ", tooLong.Take(20))}"
        );
    }
}
