#!/usr/bin/env bash
# Issue 14: what ARC costs per proxy, and how it grows with the number of budgets and of images per side. Runs `arc` on
# one proxy store in fresh folders (no cached discriminator) over a small grid, with the machine's peak measured in the
# same run.
#   bench/arc-cost.sh STORE [THREADS]   e.g. the demo's unpacked DDPM samples: runs/demo/stores/ddpm.npy
# Writes bench/results/arc-cost-DATE.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
store="${1:?usage: bench/arc-cost.sh STORE [THREADS]}"
threads="${2:-2}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
./proxyrobust --help > /dev/null # sets up and builds
dotnet build bench/ProxyRobust.Bench -c Release -nologo -v quiet -clp:ErrorsOnly
peak=$(dotnet bench/ProxyRobust.Bench/bin/Release/net10.0/ProxyRobust.Bench.dll --peak --threads "$threads" |
  sed -nE 's/.*practical peak ([0-9.]+).*/\1/p')
echo "machine: $(lscpu | sed -nE 's/^Model name: +//p'), fp32 peak $peak GFLOP/s ($threads threads)"
rows=()
# (budgets, images per side): 3 and 6 budgets at 500 per side, 6 budgets at 1,000 (the compare-proxies default)
for spec in "0,0.05,0.1:500" "0,0.025,0.05,0.1,0.15,0.2:500" "0,0.025,0.05,0.1,0.15,0.2:1000"; do
  budgets="${spec%%:*}"; per_side="${spec##*:}"
  dir="$work/$(echo "$spec" | tr ',:' '__')"
  start=$(date +%s.%N)
  ./proxyrobust arc --synthetic "$store" --names proxy --budgets "$budgets" --train-per-side "$per_side" \
    --test-per-side 500 --epochs 5 --threads "$threads" --out "$dir" > /dev/null
  end=$(date +%s.%N)
  rows+=("$budgets:$per_side:$(echo "$end - $start" | bc)")
done
mkdir -p bench/results
out="bench/results/arc-cost-$(date -u +%Y-%m-%d-%H%M).json"
/usr/bin/python3 - "$peak" "$threads" "$out" "${rows[@]}" << 'PY'
import json, sys
peak, threads, out, rows = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
table = []
print("| budgets | images per side (train) | minutes | minutes per non-zero budget |")
print("|---|---|---|---|")
for r in rows:
    budgets, per_side, seconds = r.split(":")
    nonzero = len([b for b in budgets.split(",") if float(b) > 0])
    table.append(dict(budgets=budgets, trainPerSide=int(per_side), seconds=float(seconds)))
    print(f"| {budgets} | {per_side} | {float(seconds) / 60:.2f} | {float(seconds) / 60 / nonzero:.2f} |")
json.dump(dict(peakGflops=peak, threads=threads, epochs=5, testPerSide=500, runs=table), open(out, "w"), indent=2)
print(f"written {out}")
PY
