using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyRobust.Bench;
using ProxyRobust.Core;
using ProxyRobust.Data;
using ProxyRobust.Models;
using ProxyRobust.Native;
using ProxyRobust.Training;
using TorchSharp;
using static TorchSharp.torch;

// Benchmarks of the hot paths. Every number is measured in this run, next to a matmul measured in the same run
// (the machine's practical peak), so ratios stay meaningful on another machine.
//   dotnet run -c Release --project bench/ProxyRobust.Bench -- [--threads N] [--out bench/results]
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine(
        """
        ProxyRobust.Bench: times the hot paths beside the machine's peak (a matmul measured in the same run).
          (no mode)            the whole benchmark: peak, data loader, training steps vs Debian's PyTorch 1.13
                               (skipped with --no-port), written to --out DIR (default bench/results)
          --peak               the machine's practical fp32 peak alone
          --autoattack         AutoAttack standard on --aa-points N (default 1000)
          --certify            randomized-smoothing certification
          --unet               diffusion UNet training and sampling vs PyTorch (--reps N)
          --store              page cache per random draw from a memory-mapped store
          --probe              time the pieces of a step (profiling): --arch small-cnn|preact-resnet18|unet, --reps N
                               (unet-train: the UNet's training step alone; --layouts: then
                               NCHW against channels-last, alternated)
          --allreduce          under mpiexec: all-reduce seconds by message size
          --threads N          torch threads (default: all cores)
        """
    );
    return 0;
}
int threads = Arg("--threads", Environment.ProcessorCount);
string outDir = ArgS("--out", Path.Combine("bench", "results"));
TorchRuntime.EnsureInitialised();
torch.set_num_threads(threads);

// A host where the start-up guard turned oneDNN off runs every convolution another way: its times are not comparable.
if (TorchRuntime.OneDnn is { Enabled: false, Reason: var oneDnnOff })
    Console.WriteLine($"oneDNN: off ({oneDnnOff})");
if (TorchRuntime.OneDnn.RepairedCaches is { } repaired)
    Console.WriteLine($"oneDNN: on, with cache sizes repaired by the start-up guard ({repaired})");
if (args.Contains("--probe"))
{
    // Times the pieces of a training step, for profiling (e.g. under 'perf record'): --arch NAME --reps N.
    Console.WriteLine($"glibc malloc keeps freed memory: {ProxyRobust.Native.NativeHeap.Applied}");
    var only = ArgS("--arch", "");
    int reps = Arg("--reps", 12);
    if (only is "" or "preact-resnet18")
        foreach (var b in new[] { 32, 128 })
            Probe.Run("preact-resnet18", b, 3, 32, reps);
    if (only is "" or "small-cnn")
        foreach (var b in new[] { 64, 128, 256 })
            Probe.Run("small-cnn", b, 1, 28, reps);
    if (only is "unet" or "unet-train")
        UNetProbe.Run(reps, evaluation: only == "unet", compareLayouts: args.Contains("--layouts"));
    return 0;
}
if (args.Contains("--allreduce"))
{
    // Under mpiexec: seconds per in-place float32 all-reduce by message size (the gradient path of data-parallel
    // training), from which bench/mpi-scaling.sh fits latency and bandwidth.
    using var job = ProxyRobust.Distributed.Mpi.Start() as IDisposable;
    var ranks = (IRanks?)job ?? SingleProcess.Instance;
    var sizes = new JsonArray();
    foreach (int floats in new[] { 1, 1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 22 })
    {
        using var buffer = torch.ones(floats);
        int reps = floats >= 1 << 20 ? 20 : 200;
        ranks.SumInPlace(buffer); // warm-up
        ranks.Barrier();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < reps; i++)
            ranks.SumInPlace(buffer);
        double seconds = clock.Elapsed.TotalSeconds / reps;
        sizes.Add(new JsonObject { ["bytes"] = floats * 4L, ["seconds"] = seconds });
    }
    if (ranks.IsRoot)
        Console.WriteLine(new JsonObject { ["ranks"] = ranks.Size, ["allreduce"] = sizes }.ToJsonString());
    return 0;
}
if (args.Contains("--store"))
{
    // Page cache per random draw from a memory-mapped store, before and after the random-access advice.
    var store = StoreBench.Run(Path.Combine(outDir, "tmp"));
    Directory.CreateDirectory(outDir);
    var storeFile = Path.Combine(outDir, $"store-{DateTime.UtcNow:yyyy-MM-dd-HHmm}.json");
    AtomicFile.WriteAllText(storeFile, store.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    Console.WriteLine($"written {storeFile}");
    return 0;
}
var results = new JsonObject
{
    ["date"] = DateTime.UtcNow.ToString("u"),
    ["threads"] = threads,
    ["cores"] = Environment.ProcessorCount,
    ["oneDnn"] = TorchRuntime.OneDnn.Enabled,
    ["oneDnnRepairedCaches"] = TorchRuntime.OneDnn.RepairedCaches?.ToString(),
};

// The machine's practical peak: the best of fp32 matrix products of a few sizes, measured now, both through libtorch's
// matmul (MKL) and through oneDNN (the library that runs the models' convolutions), see Measure.OneDnnGemmGflops.
var matmuls = new[] { 1024, 2048, 4096 }.ToDictionary(n => n, n => Measure.MatmulGflops(n, n >= 4096 ? 5 : 10));
var gemms = new[] { (4096, 1024), (8192, 512), (4096, 2048) }.ToDictionary(
    mk => $"{mk.Item1}x{mk.Item2}",
    mk => Measure.OneDnnGemmGflops(mk.Item1, mk.Item2)
);
double peak = Math.Max(matmuls.Values.Max(), gemms.Values.Max());
results["matmulGflops"] = new JsonObject(
    matmuls.Select(kv => KeyValuePair.Create(kv.Key.ToString(), (JsonNode?)kv.Value))
);
results["oneDnnGemmGflops"] = new JsonObject(gemms.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
results["peakGflops"] = peak;
Console.WriteLine(
    $"matmul fp32 GFLOP/s (libtorch/MKL): {string.Join(", ", matmuls.Select(kv => $"{kv.Key}: {kv.Value:F1}"))}; "
        + $"oneDNN GEMM (m x k by k x k): {string.Join(", ", gemms.Select(kv => $"{kv.Key}: {kv.Value:F1}"))}; "
        + $"practical peak {peak:F1}"
);

if (args.Contains("--peak"))
    return 0; // the machine's peak alone (printed above), to quote beside a time measured elsewhere
if (args.Contains("--certify"))
{
    results["certification"] = CertifyBench.Run(peak);
    Directory.CreateDirectory(outDir);
    var cFile = Path.Combine(outDir, $"certify-{DateTime.UtcNow:yyyy-MM-dd-HHmm}.json");
    AtomicFile.WriteAllText(cFile, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    Console.WriteLine($"written {cFile}");
    return 0;
}
if (args.Contains("--unet"))
{
    results["unet"] = UNetBench.Run(peak, threads, Arg("--reps", 5));
    Directory.CreateDirectory(outDir);
    var uFile = Path.Combine(outDir, $"unet-{DateTime.UtcNow:yyyy-MM-dd-HHmm}.json");
    AtomicFile.WriteAllText(uFile, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    Console.WriteLine($"written {uFile}");
    return 0;
}
if (args.Contains("--autoattack"))
{
    results["autoattack"] = AutoAttackBench.Run(peak, Arg("--aa-points", 1000));
    Directory.CreateDirectory(outDir);
    var aaFile = Path.Combine(outDir, $"autoattack-{DateTime.UtcNow:yyyy-MM-dd-HHmm}.json");
    AtomicFile.WriteAllText(aaFile, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    Console.WriteLine($"written {aaFile}");
    return 0;
}

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
    Console.WriteLine(
        $"training step small-cnn batch 128: {r.ImagesPerSecond:F0} img/s, {r.Gflops:F1} GFLOP/s, MFU "
            + $"{r.Utilisation:P0}"
    );
    double loaderRatio = results["loaderImagesPerSecond"]!.GetValue<double>() / r.ImagesPerSecond;
    results["loaderOverTrainStep"] = loaderRatio;
    Console.WriteLine($"loader / training step: {loaderRatio:F1}x");
}

// PGD-10 adversarial-training steps (issue 3): ours and Debian's PyTorch 1.13 on the same workload, in this run.
if (!args.Contains("--no-port"))
{
    var rows = new JsonArray();
    var threat = new ProxyRobust.Attacks.ThreatModel(ProxyRobust.Attacks.Norm.Linf, 8.0 / 255);
    var objective = new AdversarialObjective(
        new ProxyRobust.Attacks.Pgd(threat, 10, threat.Epsilon / 4, KeepFirstSuccess: false),
        "pgd-at"
    );
    var (rgbImages, rgbLabels) = (new byte[2048 * 3072], Enumerable.Range(0, 2048).Select(i => i % 10).ToArray());
    new Random(0).NextBytes(rgbImages);
    using var rgb = new ImageDataset(
        "random 32x32x3",
        new ArrayImageStore(rgbImages, 3072),
        rgbLabels,
        32,
        32,
        3,
        CifarReader.Cifar10Classes
    );
    var reference = Measure.PyTorchReference(threads, int.Parse(ArgS("--torch-steps", "6")));
    var tunedReference = Measure.PyTorchReference(threads, int.Parse(ArgS("--torch-steps", "6")), tuned: true);
    results["pytorch"] = reference;
    results["pytorchTuned"] = tunedReference;
    // FLOPs of a PGD-10 AT step: 10 attack steps of forward + input-gradient backward (2 forwards each), then a
    // training forward + backward (3 forwards): 23 forward passes.
    foreach (var (arch, data) in new[] { ("small-cnn", fmnist), ("preact-resnet18", rgb) })
    {
        foreach (var (batch, chunk) in new[] { (32, 0), (32, 16), (128, 0), (128, 16) })
        {
            int steps = arch == "small-cnn" ? 60 : int.Parse(ArgS("--torch-steps", "6"));
            var attackObjective =
                chunk == 0
                    ? objective
                    : new AdversarialObjective(
                        new ProxyRobust.Attacks.Pgd(threat, 10, threat.Epsilon / 4, KeepFirstSuccess: false)
                        {
                            Chunk = chunk,
                        },
                        "pgd-at"
                    );
            var r = Measure.TrainStep(data, arch, batch, attackObjective, steps, peak, flopMultiplier: 23);
            double? torchRate = reference?[$"pgd10at/{arch}/{batch}"]?.GetValue<double>();
            double? tunedRate = tunedReference?[$"pgd10at/{arch}/{batch}"]?.GetValue<double>();
            // Utilisation of both against the same machine peak.
            double? torchMfu = torchRate * r.ForwardMacsPerImage * 2 * 23 / 1e9 / peak;
            rows.Add(
                new JsonObject
                {
                    ["arch"] = arch,
                    ["batch"] = batch,
                    ["attackChunk"] = chunk,
                    ["oursImagesPerSecond"] = r.ImagesPerSecond,
                    ["oursUtilisation"] = r.Utilisation,
                    ["pytorchImagesPerSecond"] = torchRate,
                    ["pytorchUtilisation"] = torchMfu,
                    ["ratio"] = torchRate is null ? null : r.ImagesPerSecond / torchRate,
                    ["pytorchTunedImagesPerSecond"] = tunedRate,
                    ["ratioToTuned"] = tunedRate is null ? null : r.ImagesPerSecond / tunedRate,
                }
            );
            Console.WriteLine(
                $"PGD-10 AT {arch} batch {batch}{(chunk > 0 ? $" (attack chunks of {chunk})" : "")}: ours "
                    + $"{r.ImagesPerSecond:F1} img/s (MFU {r.Utilisation:P0}); "
                    + $"PyTorch 1.13 {torchRate:F1} img/s (MFU {torchMfu:P0}), tuned {tunedRate:F1}; ratio "
                    + $"{r.ImagesPerSecond / torchRate:F2}x, to tuned {r.ImagesPerSecond / tunedRate:F2}x"
            );
        }
    }
    results["pgd10AdversarialTraining"] = rows;
}

Directory.CreateDirectory(outDir);
var file = Path.Combine(outDir, $"benchmarks-{DateTime.UtcNow:yyyy-MM-dd-HHmm}.json");
AtomicFile.WriteAllText(file, results.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine($"written {file}");
return 0;

int Arg(string name, int dflt) => Array.IndexOf(args, name) is var i and >= 0 ? int.Parse(args[i + 1]) : dflt;
string ArgS(string name, string dflt) => Array.IndexOf(args, name) is var i and >= 0 ? args[i + 1] : dflt;
