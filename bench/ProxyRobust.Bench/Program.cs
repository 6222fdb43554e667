using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust;
using ProxyRobust.Bench;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Native;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

// Benchmarks of the hot paths. Every number is measured in this run, next to a matmul measured in the same run
// (the machine's practical peak), so ratios stay meaningful on another machine.
//   dotnet run -c Release --project bench/ProxyRobust.Bench -- [--threads N] [--out bench/results]
int threads = Arg("--threads", Environment.ProcessorCount);
string outDir = ArgS("--out", Path.Combine("bench", "results"));
TorchRuntime.EnsureInitialised();
torch.set_num_threads(threads);
var results = new JsonObject { ["date"] = DateTime.UtcNow.ToString("u"), ["threads"] = threads, ["cores"] = Environment.ProcessorCount };

double peak = Measure.MatmulGflops(2048);
results["matmul2048Gflops"] = peak;
Console.WriteLine($"matmul 2048x2048 fp32: {peak:F1} GFLOP/s (practical peak)");

using var fmnist = DatasetLoader.Load(DatasetLoader.FashionMnistName, Split.Train);

// Data loader: one epoch of batches of 128, with crop augmentation, converted to tensors (what training consumes).
{
    var sampler = new BatchSampler(fmnist, 128, shuffle: true, new AugmentOptions(2, false), seed: 0);
    var sw = Stopwatch.StartNew();
    long n = 0;
    foreach (var b in sampler.Epoch(0))
    {
        using var scope = NewDisposeScope();
        var (x, y) = b.ToTensors(CPU);
        n += b.Count;
    }
    double rate = n / sw.Elapsed.TotalSeconds;
    results["loaderImagesPerSecond"] = rate;
    Console.WriteLine($"data loader (Fashion-MNIST, batch 128, crop): {rate:F0} img/s");
}

// Clean training step, small CNN on 28x28, batch 128.
{
    var r = Measure.TrainStep(fmnist, "small-cnn", 128, new CrossEntropyObjective(), steps: 60, peak);
    results["trainStepSmallCnn"] = JsonSerializer.SerializeToNode(r);
    Console.WriteLine($"training step small-cnn batch 128: {r.ImagesPerSecond:F0} img/s, {r.Gflops:F1} GFLOP/s, MFU {r.Utilisation:P0}");
    double loaderRatio = results["loaderImagesPerSecond"]!.GetValue<double>() / r.ImagesPerSecond;
    results["loaderOverTrainStep"] = loaderRatio;
    Console.WriteLine($"loader / training step: {loaderRatio:F1}x");
}

Directory.CreateDirectory(outDir);
var file = Path.Combine(outDir, "foundation.json");
AtomicFile.WriteAllText(file, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine($"written {file}");
return 0;

int Arg(string name, int dflt) => Array.IndexOf(args, name) is var i and >= 0 ? int.Parse(args[i + 1]) : dflt;
string ArgS(string name, string dflt) => Array.IndexOf(args, name) is var i and >= 0 ? args[i + 1] : dflt;
