using System.Diagnostics;
using System.Text.Json.Nodes;
using TorchSharp.PyBridge;

namespace ProxyRobust.Tests;

/// <summary>
/// Ctrl-C as a user sends it: SIGINT to a running CLI process. The run must save its state, exit with 130, and the same
/// command with --resume must end where an uninterrupted run ends.
/// </summary>
public sealed class InterruptTests
{
    public InterruptTests() => TestSupport.InitTorch();

    /// <summary>
    /// Starts the CLI, waits until <paramref name="ready"/> holds for its output so far, sends SIGINT;
    /// returns (exit code, stdout, stderr).
    /// </summary>
    private static (int Code, string Out, string Err) Interrupt(Func<string, bool> ready, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ProxyRobust.Cli.dll"));
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var running = TestSupport.StartCollecting(psi);
        var child = running.Process;
        string Out() => running.Output();
        var clock = Stopwatch.StartNew();
        while (!ready(Out()) && !child.HasExited && clock.Elapsed < TimeSpan.FromMinutes(4))
            Thread.Sleep(20);
        Assert.False(child.HasExited, $"the run ended before it could be interrupted: {running.Errors()}");
        using (var kill = Process.Start("kill", ["-INT", child.Id.ToString()]))
            kill.WaitForExit();
        Assert.True(child.WaitForExit(TimeSpan.FromMinutes(2)), "the interrupted run did not stop");
        child.WaitForExit(); // flush the asynchronous readers
        return (child.ExitCode, Out(), running.Errors());
    }

    private static string[] TrainArgs(string dir) =>
        [
            "train",
            "--method",
            "pgd",
            "--train-size",
            "2000",
            "--eval-size",
            "100",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--checkpoint-every",
            "1000",
            "--out",
            dir,
            "--threads",
            "1",
        ];

    [Fact]
    public void Sigint_to_train_saves_a_checkpoint_and_resume_ends_at_the_uninterrupted_weights()
    {
        using var tmp = new TempDir();
        var straight = TestSupport.RunCli(TrainArgs(tmp.File("straight")));
        Assert.True(straight.Code == 0, straight.Err);

        var cut = tmp.File("cut");
        // Interrupt once training has taken its first step (the first progress line): mid-epoch, long before a
        // checkpoint is due.
        var (code, _, err) = Interrupt(output => output.Contains(" step "), TrainArgs(cut));
        Assert.True(code == 130, $"exit code {code}: {err}");
        Assert.Contains("--resume", err);
        Assert.False(
            File.Exists(Path.Combine(cut, "final.json")),
            "the interrupted run finished anyway: interrupt it earlier"
        );
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(cut, "last.json")))!;
        long step = (long)saved["step"]!;
        Assert.True(step is > 0 and < 64, $"stopped at step {step} of 64");

        var resumed = TestSupport.RunCli([.. TrainArgs(cut), "--resume"]);
        Assert.True(resumed.Code == 0, resumed.Err);
        var a = Safetensors.LoadStateDict(tmp.File("straight/final.safetensors"));
        var b = Safetensors.LoadStateDict(Path.Combine(cut, "final.safetensors"));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a)
            Assert.True((t - b[name]).abs().max().item<float>() <= 1e-5, $"{name} differs from the uninterrupted run");
    }

    [Fact]
    public void Sigint_to_autoattack_saves_its_state_and_resume_ends_with_the_same_robust_points()
    {
        var (model, _) = TestSupport.PgdTrainedFashionMnist();
        using var tmp = new TempDir();
        string[] Args(string json) =>
            [
                "eval",
                "--checkpoint",
                model,
                "--attack",
                "autoattack",
                // fast (APGD-CE, then APGD-MALT): the state and its resume are the same for every version, and fast
                // runs the two whole runs this test needs in a fraction of standard's time
                "--version",
                "fast",
                "--eps",
                "0.1",
                "--n-examples",
                "40",
                "--batch-size",
                "20",
                "--json",
                json,
                "--threads",
                "1",
            ];
        var straight = TestSupport.RunCli(Args(tmp.File("straight.json")));
        Assert.True(straight.Code == 0, straight.Err);

        var cut = tmp.File("cut.json");
        var state = cut + ".autoattack-state.json";
        var (code, _, err) = Interrupt(_ => File.Exists(state), Args(cut));
        Assert.True(code == 130, $"exit code {code}: {err}");
        Assert.True(File.Exists(state), "no state was kept");
        Assert.False(File.Exists(cut), "the interrupted run finished anyway");

        var resumed = TestSupport.RunCli([.. Args(cut), "--resume"]);
        Assert.True(resumed.Code == 0, resumed.Err);
        Assert.False(File.Exists(state), "the state of a finished run is removed");
        JsonNode AutoAttack(string path) => JsonNode.Parse(File.ReadAllText(path))!["autoattack"]!;
        var (a, b) = (AutoAttack(tmp.File("straight.json")), AutoAttack(cut));
        Assert.Equal((string)a["robustPoints"]!, (string)b["robustPoints"]!);
        Assert.Equal((int)a["correct"]!, (int)b["correct"]!);
        Assert.Equal(
            a["stages"]!.AsArray().Select(s => (int)s!["robustAfter"]!),
            b["stages"]!.AsArray().Select(s => (int)s!["robustAfter"]!)
        );
    }
}
