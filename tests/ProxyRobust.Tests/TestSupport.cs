using System.Diagnostics;
using System.Reflection;
using ProxyRobust.Data;
using ProxyRobust.Native;

namespace ProxyRobust.Tests;

/// <summary>Temporary folder removed after the test.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("proxyrobust-test-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

public static class TestSupport
{
    static TestSupport() => TorchRuntime.EnsureInitialised();

    public static void InitTorch()
    {
        TorchRuntime.EnsureInitialised();
        TorchSharp.torch.set_num_threads(Environment.ProcessorCount);
    }

    public static string? MetadataValue(string key) =>
        typeof(TestSupport).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == key)?.Value;

    /// <summary>Fashion-MNIST from Debian's package; the setup script installs it, so its absence is a failure.</summary>
    public static ImageDataset FashionMnist(Split split)
    {
        Assert.True(DatasetLoader.FindFashionMnist() is not null,
            "Fashion-MNIST is missing: run the README's test command (it installs dataset-fashion-mnist)");
        return DatasetLoader.Load(DatasetLoader.FashionMnistName, split);
    }

    /// <summary>Random uint8 NHWC images with labels cycling through the classes.</summary>
    public static (byte[] Images, int[] Labels) RandomImages(int n, int h, int w, int c, int classes, int seed)
    {
        var rng = new Random(seed);
        var images = new byte[n * h * w * c];
        rng.NextBytes(images);
        return (images, Enumerable.Range(0, n).Select(i => i % classes).ToArray());
    }

    /// <summary>Runs the CLI in a child process: (exit code, stdout, stderr).</summary>
    public static (int Code, string Out, string Err) RunCli(params string[] args)
    {
        var dll = System.IO.Path.Combine(AppContext.BaseDirectory, "ProxyRobust.Cli.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["PROXYROBUST_THREADS"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); throw new TimeoutException("CLI did not finish"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
