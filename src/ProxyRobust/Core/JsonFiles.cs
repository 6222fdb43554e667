using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace ProxyRobust.Core;

/// <summary>
/// One JSON convention for every file the tool writes: camelCase names, indented, nulls left out, and a
/// "schemaVersion" in every file. Version 1 files (before the convention) had PascalCase names in some parts; names are
/// matched case-insensitively on reading, so they still read. A file from a newer version is refused with its version.
/// </summary>
public static class JsonFiles
{
    /// <summary>The schema version this build writes (1: the files before one naming convention; 2: camelCase
    /// throughout).</summary>
    public const int SchemaVersion = 2;

    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        PropertyNameCaseInsensitive = true,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    public static JsonNode? ToNode<T>(T value) => JsonSerializer.SerializeToNode(value, Options);

    public static T? FromNode<T>(JsonNode? node) => node is null ? default : node.Deserialize<T>(Options);

    /// <summary>Writes <paramref name="value"/> atomically, with "schemaVersion" first.</summary>
    public static void Write<T>(string path, T value)
    {
        var node =
            ToNode(value) as JsonObject
            ?? throw new ArgumentException($"{typeof(T).Name} does not serialise to a JSON object");
        WriteObject(path, node);
    }

    /// <summary>Writes a JSON object atomically, with "schemaVersion" first.</summary>
    public static void WriteObject(string path, JsonObject node)
    {
        var versioned = new JsonObject { ["schemaVersion"] = SchemaVersion };
        foreach (var (key, value) in node)
            if (key != "schemaVersion")
                versioned[key] = value?.DeepClone();
        AtomicFile.WriteAllText(path, versioned.ToJsonString(Options));
    }

    /// <summary>Parses a file written by <see cref="Write{T}"/> (or by an older version); one error naming the file
    /// otherwise.</summary>
    public static JsonObject ReadObject(string path)
    {
        if (!File.Exists(path))
            throw new DataFormatException(path, "file not found");
        JsonObject node;
        try
        {
            node =
                JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new DataFormatException(path, "not a JSON object");
        }
        catch (JsonException e)
        {
            throw new DataFormatException(path, $"corrupt JSON ({e.Message})", e);
        }
        int version = 1;
        if (node["schemaVersion"] is { } v && !(v is JsonValue value && value.TryGetValue(out version)))
            throw new DataFormatException(path, $"schemaVersion {v.ToJsonString()} is not a number");
        if (version > SchemaVersion || version < 1)
            throw new DataFormatException(
                path,
                $"written with schema version {version}; this ProxyRobust reads versions 1 to {SchemaVersion} "
                    + $"(update ProxyRobust)"
            );
        return node;
    }

    /// <summary>Reads a typed record from a file (see <see cref="ReadObject"/>).</summary>
    public static T Read<T>(string path)
    {
        var node = ReadObject(path);
        try
        {
            return node.Deserialize<T>(Options) ?? throw new DataFormatException(path, $"empty {typeof(T).Name}");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NotSupportedException)
        {
            throw new DataFormatException(path, $"not a valid {Describe(typeof(T))} ({e.Message})", e);
        }
    }

    private static string Describe(Type t) =>
        string.Concat(
            t.Name.Select(
                (c, i) =>
                    i > 0 && char.IsUpper(c) ? " " + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()
            )
        );
}
