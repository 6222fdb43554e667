#!/usr/bin/env bash
# Issue 15: data-parallel training over MPI on this machine. Steps/s of PGD-10 training of the small CNN with 1 and 2
# ranks (one thread each, the same global batch of 128), the share of each step spent in the gradient all-reduce, the
# all-reduce cost by message size, and from those a paper estimate of 8 and 64 ranks. The machine's peak (1 thread)
# is measured in the same run.
#   bench/mpi-scaling.sh [STEPS]      (default 40 steps per run)
# Writes bench/results/mpi-scaling-DATE.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-40}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
./proxyrobust setup --mpi
dotnet build bench/ProxyRobust.Bench -c Release -nologo -v quiet -clp:ErrorsOnly
bench=bench/ProxyRobust.Bench/bin/Release/net10.0/ProxyRobust.Bench.dll
cli=src/ProxyRobust.Cli/bin/Release/net10.0/ProxyRobust.Cli.dll
peak=$(dotnet "$bench" --peak --threads 1 | sed -nE 's/.*practical peak ([0-9.]+).*/\1/p')
echo "machine: $(lscpu | sed -nE 's/^Model name: +//p'), fp32 peak $peak GFLOP/s (1 thread)"
mpiexec.mpich -np 2 dotnet "$bench" --allreduce --threads 1 > "$work/allreduce.json"
args=(train --method pgd --attack-steps 10 --train-size $((steps * 128)) --val-size 0 --eval-size 100 --epochs 1
  --batch-size 128 --threads 1 --checkpoint-every 1000000)
dotnet "$cli" "${args[@]}" --out "$work/n1" > /dev/null
mpiexec.mpich -np 2 dotnet "$cli" "${args[@]}" --out "$work/n2" > /dev/null
mkdir -p bench/results
out="bench/results/mpi-scaling-$(date -u +%Y-%m-%d-%H%M).json"
/usr/bin/python3 - "$work" "$peak" "$steps" "$out" << 'PY'
import json, sys
work, peak, steps, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ar = json.load(open(f"{work}/allreduce.json"))["allreduce"]
n1 = json.load(open(f"{work}/n1/result.json"))
n2 = json.load(open(f"{work}/n2/result.json"))
# training seconds only (the final test evaluation is outside): the epoch's own clock
t1 = sum(h["seconds"] for h in n1["history"]) / steps
t2 = sum(h["seconds"] for h in n2["history"]) / steps
par = n2["parallel"]
comm = par["communicationSeconds"] / par["steps"]
message = par["bytesPerStep"]
# latency: the smallest message; bandwidth: the largest (bytes / seconds, as an all-reduce of 2 ranks moves it)
alpha = min(x["seconds"] for x in ar if x["bytes"] <= 4096)
big = max(ar, key=lambda x: x["bytes"])
beta = big["bytes"] / max(big["seconds"] - alpha, 1e-9)
def ring(n, a, b):
    # ring all-reduce: 2(n-1) messages of M/n bytes each way
    return 2 * (n - 1) * a + 2 * (n - 1) / n * message / b
def estimate(n, a, b):
    # strong scaling (global batch 128 shared among n ranks: the 2-rank compute per step times 2/n; optimistic, since
    # a rank's throughput drops at a few images) and weak scaling (64 images per rank as measured, global batch 64n)
    strong = (t2 - comm) * 2 / n + ring(n, a, b)
    weak = (t2 - comm) + ring(n, a, b)
    return dict(ranks=n, strongStepSeconds=strong, speedup=t1 / strong, communicationShare=ring(n, a, b) / strong,
                weakStepSeconds=weak, weakThroughputSpeedup=(n * 64 / weak) / (128 / t1),
                weakCommunicationShare=ring(n, a, b) / weak)
networks = {
    "this machine (shared memory)": (alpha, beta),
    "10 GbE (20 us, 1.25 GB/s)": (20e-6, 1.25e9),
    "100 Gb/s InfiniBand (2 us, 12 GB/s)": (2e-6, 12e9),
}
est = {name: [estimate(n, a, b) for n in (8, 64)] for name, (a, b) in networks.items()}
print(f"| ranks | s/step | steps/s | speedup | all-reduce share | message |")
print(f"|---|---|---|---|---|---|")
print(f"| 1 | {t1:.3f} | {1 / t1:.2f} | 1.00x | - | - |")
print(f"| 2 | {t2:.3f} | {1 / t2:.2f} | {t1 / t2:.2f}x | {comm / t2:.1%} | {message / 1e6:.2f} MB |")
print(f"all-reduce on this machine: latency {alpha * 1e6:.1f} us, bandwidth {beta / 1e9:.2f} GB/s")
for name, rows in est.items():
    print(f"estimate, {name}: " + "; ".join(
        f"{r['ranks']} ranks {r['speedup']:.1f}x at batch 128 ({r['communicationShare']:.0%} all-reduce), "
        f"{r['weakThroughputSpeedup']:.1f}x images/s at 64 per rank ({r['weakCommunicationShare']:.0%})" for r in rows))
json.dump(dict(peakGflops=peak, steps=steps, secondsPerStep={"1": t1, "2": t2}, allreduceSecondsPerStep=comm,
               bytesPerStep=message, allreduce=ar, latencySeconds=alpha, bandwidthBytesPerSecond=beta,
               estimates=est), open(out, "w"), indent=2)
print(f"written {out}")
PY
