using System.CommandLine;
using System.CommandLine.Parsing;

namespace ProxyRobust.Cli;

/// <summary>Range checks on options, done at parse time: a bad value is a usage error (exit 2) naming the option,
/// before any work.</summary>
internal static class OptionRules
{
    private static Option<T> Check<T>(this Option<T> option, Func<T, bool> ok, string rule)
    {
        option.Validators.Add(result =>
        {
            if (result.Implicit)
                return; // the default is always valid
            T value;
            try
            {
                value = result.GetValueOrDefault<T>();
            }
            catch (InvalidOperationException)
            {
                return;
            } // not a number at all: the parser reports that itself
            if (!ok(value))
                result.AddError($"{option.Name} must be {rule}, got {value}");
        });
        return option;
    }

    public static Option<int> Positive(this Option<int> o) => o.Check(v => v > 0, "positive");

    public static Option<int?> Positive(this Option<int?> o) => o.Check(v => v is null or > 0, "positive");

    public static Option<double> Positive(this Option<double> o) => o.Check(v => v > 0, "positive");

    public static Option<double?> Positive(this Option<double?> o) => o.Check(v => v is null or > 0, "positive");

    public static Option<int> NonNegative(this Option<int> o) => o.Check(v => v >= 0, "zero or more");

    public static Option<double> NonNegative(this Option<double> o) => o.Check(v => v >= 0, "zero or more");

    public static Option<int?> NonNegative(this Option<int?> o) => o.Check(v => v is null or >= 0, "zero or more");

    /// <summary>low &lt;= v &lt;= high, or with <paramref name="open"/> low &lt; v &lt; high.</summary>
    public static Option<double> Between(this Option<double> o, double low, double high, bool open = false) =>
        o.Check(
            v => open ? v > low && v < high : v >= low && v <= high,
            open ? $"in ({low}, {high})" : $"in [{low}, {high}]"
        );

    public static Option<double?> Between(this Option<double?> o, double low, double high, bool open = false) =>
        o.Check(
            v => v is null || (open ? v > low && v < high : v >= low && v <= high),
            open ? $"in ({low}, {high})" : $"in [{low}, {high}]"
        );
}
