#!/usr/bin/env bash
# Issue 12: our AutoAttack (standard, l-inf eps 0.1) against the original PyTorch code on the same model and the same
# points, in one run, with the machine's peak measured in the same run. Trains a small CNN briefly with PGD (unless a
# checkpoint is given), exports it, runs ours, then the original through bench/autoattack_original.py.
#   bench/autoattack-vs-original.sh ORIGINAL_DIR [POINTS=1000] [CHECKPOINT]
# ORIGINAL_DIR: a checkout of the original AutoAttack (the folder holding its `autoattack` package); needs
# Debian's python3-torch. Writes bench/results/autoattack-vs-original-DATE.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
original="${1:?usage: bench/autoattack-vs-original.sh ORIGINAL_DIR [POINTS] [CHECKPOINT]}"
points="${2:-1000}"
model="${3:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
[ -n "${KEEP:-}" ] && trap 'echo "work folder kept: $work"' EXIT
./proxyrobust --help > /dev/null # sets up and builds
dotnet build bench/ProxyRobust.Bench -c Release -nologo -v quiet -clp:ErrorsOnly
peak=$(dotnet bench/ProxyRobust.Bench/bin/Release/net10.0/ProxyRobust.Bench.dll --peak --threads 2 |
  sed -nE 's/.*practical peak ([0-9.]+).*/\1/p')
echo "machine: $(lscpu | sed -nE 's/^Model name: +//p'), fp32 peak $peak GFLOP/s (2 threads)"
if [ -z "$model" ]; then
  ./proxyrobust train --method pgd --train-size 2000 --eval-size 200 --epochs 4 --batch-size 64 --lr 0.05 --seed 1 \
    --out "$work/model" > /dev/null
  model="$work/model"
fi
./proxyrobust export --checkpoint "$model" --format safetensors --out "$work/model.safetensors" > /dev/null
start=$(date +%s.%N)
./proxyrobust eval --checkpoint "$model" --attack autoattack --eps 0.1 --n-examples "$points" --threads 2 \
  --save-points "$work/points.npy" --json "$work/ours.json" > "$work/ours.log"
ours_wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
start=$(date +%s.%N)
/usr/bin/python3 bench/autoattack_original.py --autoattack "$original" --model "$work/model.safetensors" \
  --points "$work/points.npy" --eps 0.1 --threads 2 --out "$work/original.json"
original_wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
mkdir -p bench/results
out="bench/results/autoattack-vs-original-$(date -u +%Y-%m-%d-%H%M).json"
/usr/bin/python3 - "$work/ours.json" "$work/original.json" "$peak" "$out" "$ours_wall" "$original_wall" << 'EOF'
import json, sys
ours, orig = (json.load(open(p)) for p in sys.argv[1:3])
peak, out = float(sys.argv[3]), sys.argv[4]
ours_wall, orig_wall = float(sys.argv[5]), float(sys.argv[6])
n = ours["points"]
stages = {s["attack"]: s["seconds"] for s in ours["autoattack"]["stages"]}
ostages = {s["attack"]: s["seconds"] for s in orig["stages"]}
ours_total, orig_total = sum(stages.values()), sum(ostages.values())
a, b = ours["autoattack"]["robustPoints"], orig["robustPoints"]
both = sum(x == "1" and y == "1" for x, y in zip(a, b))
print(f"{n} points; clean {ours['clean']['accuracy']:.1%} (ours) {orig['clean']:.1%} (original)")
print("| component | ours s | original s | ratio |")
print("|---|---|---|---|")
for k in stages:
    o = ostages.get(k)
    print(f"| {k} | {stages[k]:.1f} | {o:.1f} | {o / stages[k]:.2f}x |" if o else f"| {k} | {stages[k]:.1f} | - | - |")
print(f"| total | {ours_total:.1f} | {orig_total:.1f} | **{orig_total / ours_total:.2f}x** |")
print(f"| whole command (process start to exit) | {ours_wall:.1f} | {orig_wall:.1f} | {orig_wall / ours_wall:.2f}x |")
print(f"robust accuracy: ours {ours['autoattack']['accuracy']:.2%}, original {orig['robustAccuracy']:.2%}; "
      f"robust for both {both}, only ours {a.count('1') - both}, only original {b.count('1') - both}")
ours["checkpoint"] = "model (trained by the script in its temporary folder)" if "/tmp" in ours["checkpoint"] else ours["checkpoint"]
json.dump({"peakGflops": peak, "points": n, "ours": ours, "original": orig,
           "ratio": orig_total / ours_total,
           "oursWallSeconds": ours_wall, "originalWallSeconds": orig_wall}, open(out, "w"), indent=1)
print(f"written {out}")
EOF
