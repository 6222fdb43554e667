using System.Diagnostics;
using System.Reflection;
using System.Text;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Native;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ProxyRobust.Tests;

/// <summary>Temporary folder removed after the test.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("proxyrobust-test-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException) { }
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
        typeof(TestSupport)
            .Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == key)
            ?.Value;

    /// <summary>Fashion-MNIST from Debian's package; the setup script installs it, so its absence is a
    /// failure.</summary>
    public static ImageDataset FashionMnist(Split split)
    {
        Assert.True(
            DatasetLoader.FindFashionMnist() is not null,
            "Fashion-MNIST is missing: run the README's test command (it installs dataset-fashion-mnist)"
        );
        return DatasetLoader.Load(DatasetLoader.FashionMnistName, split);
    }

    private static readonly Lazy<(string Dir, Experiments.TrainRunResult Result)> PgdModel = new(
        () =>
        {
            // Kept for the whole test run (several test classes use it; training it once saves a minute of CPU).
            var dir = TempDirForTheRun("proxyrobust-test-pgd-");
            var result = Experiments.TrainRun.Execute(
                new Experiments.TrainRunConfig
                {
                    TrainSize = 2000,
                    EvalSize = 500,
                    Method = Experiments.TrainMethod.Pgd,
                    Epsilon = 0.1,
                    OutputDir = dir,
                    Options = new Training.TrainOptions
                    {
                        Epochs = 4,
                        BatchSize = 64,
                        LearningRate = 0.05,
                        Seed = 1,
                    },
                }
            );
            return (dir, result);
        },
        LazyThreadSafetyMode.ExecutionAndPublication
    );

    /// <summary>A small CNN PGD-trained (l-inf eps 0.1, 4 epochs) on 2,000 Fashion-MNIST images, shared by the tests
    /// that need one.</summary>
    public static (string Dir, Experiments.TrainRunResult Result) PgdTrainedFashionMnist() => PgdModel.Value;

    /// <summary>A small CNN trained for 6 epochs (clean) on 300 Fashion-MNIST test images: accurate enough, not
    /// robust.</summary>
    public static Classifier BrieflyTrained(out ImageDataset data)
    {
        using var fm = FashionMnist(Split.Test);
        data = fm.Split(300, 5).Taken;
        torch.manual_seed(2);
        var (mean, std) = DatasetStats.ChannelMeanStd(data);
        var model = ArchSpec.For("small-cnn", 1, 28, 28, 10, mean, std).Create();
        var sgd = new Sgd(model, 0.9, 0, false);
        var sampler = new BatchSampler(data, 50, true, AugmentOptions.None, 3);
        for (int e = 0; e < 6; e++)
        {
            foreach (var b in sampler.Epoch(e))
            {
                using var scope = NewDisposeScope();
                var (x, y) = b.ToTensors(CPU);
                model.zero_grad();
                nn.functional.cross_entropy(model.call(x), y).backward();
                sgd.Step(0.05);
            }
        }
        model.eval();
        return model;
    }

    /// <summary>A temporary folder that lives until the test process exits: for models trained once and shared by
    /// several tests.</summary>
    public static string TempDirForTheRun(string prefix)
    {
        var dir = Directory.CreateTempSubdirectory(prefix).FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(dir, true);
            }
            catch (IOException) { }
        };
        return dir;
    }

    /// <summary>The checkout's root: the first folder above the test binaries that holds ProxyRobust.slnx.</summary>
    public static string RepositoryRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "ProxyRobust.slnx")))
            dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("repository root not found above the test binaries");
    }

    /// <summary>Random uint8 NHWC images with labels cycling through the classes.</summary>
    public static (byte[] Images, int[] Labels) RandomImages(int n, int h, int w, int c, int classes, int seed)
    {
        var rng = new Random(seed);
        var images = new byte[n * h * w * c];
        rng.NextBytes(images);
        return (images, Enumerable.Range(0, n).Select(i => i % classes).ToArray());
    }

    /// <summary>Starts a child process whose stdout and stderr are collected as they come (for tests that act on a
    /// running process); <see cref="BackgroundProcess.Output"/> and <see cref="BackgroundProcess.Errors"/> read them so
    /// far.</summary>
    public static BackgroundProcess StartCollecting(ProcessStartInfo psi) => new(psi);

    public sealed class BackgroundProcess : IDisposable
    {
        private readonly StringBuilder output = new(),
            errors = new();

        public Process Process { get; }

        internal BackgroundProcess(ProcessStartInfo psi)
        {
            psi.RedirectStandardOutput = true;
            psi.RedirectStandardError = true;
            psi.UseShellExecute = false;
            Process = new Process { StartInfo = psi };
            Process.OutputDataReceived += (_, e) =>
            {
                lock (output)
                    output.AppendLine(e.Data);
            };
            Process.ErrorDataReceived += (_, e) =>
            {
                lock (errors)
                    errors.AppendLine(e.Data);
            };
            Process.Start();
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public string Output()
        {
            lock (output)
                return output.ToString();
        }

        public string Errors()
        {
            lock (errors)
                return errors.ToString();
        }

        public void Dispose() => Process.Dispose();
    }

    /// <summary>Runs the CLI in a child process: (exit code, stdout, stderr).</summary>
    public static (int Code, string Out, string Err) RunCli(params string[] args) =>
        RunDotnet(null, [System.IO.Path.Combine(AppContext.BaseDirectory, "ProxyRobust.Cli.dll"), .. args]);

    /// <summary>Runs `dotnet ARGS` in a child process (in <paramref name="workingDirectory"/> when given): (exit code,
    /// stdout, stderr).</summary>
    public static (int Code, string Out, string Err) RunDotnet(string? workingDirectory, params string[] args) =>
        RunDotnetWith(new Dictionary<string, string>(), workingDirectory, args);

    /// <summary><see cref="RunDotnet"/> with extra environment variables.</summary>
    public static (int Code, string Out, string Err) RunDotnetWith(
        IReadOnlyDictionary<string, string> environment,
        string? workingDirectory,
        params string[] args
    )
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["PROXYROBUST_THREADS"] = "1";
        foreach (var (key, value) in environment)
            psi.Environment[key] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(true);
            throw new TimeoutException($"dotnet {string.Join(' ', args)} did not finish");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
