#!/usr/bin/python3
"""The original AutoAttack (Croce & Hein's PyTorch code) on a model and points written by ProxyRobust, for the
ratio ours / original measured in one run (issue 12). Writes one JSON object to --out.

usage: /usr/bin/python3 bench/autoattack_original.py --autoattack DIR --model model.safetensors --points points.npy --out R.json
           [--labels points.labels.npy] [--norm Linf] [--eps 0.1] [--threads 2] [--bs 250] [--seed 0]

DIR is a checkout of the original code (the folder holding its `autoattack` package); nothing of it is copied here.
The model is rebuilt from `proxyrobust export --format safetensors` by scripts/crosscheck/proxyrobust_models.py, the
points are `eval --save-points` output (float32 N x H x W x C in [0,1], labels beside them).
"""
import argparse, contextlib, io, json, os, re, sys, time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "crosscheck"))
from proxyrobust_models import load  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--autoattack", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--points", required=True)
    p.add_argument("--labels")
    p.add_argument("--norm", default="Linf")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bs", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="where the JSON result goes")
    a = p.parse_args()
    sys.path.insert(0, a.autoattack)
    from autoattack import AutoAttack  # the original, from the given checkout

    torch.set_num_threads(a.threads)
    labels = a.labels or re.sub(r"\.npy$", "", a.points) + ".labels.npy"
    x = torch.from_numpy(np.load(a.points)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.load(labels).astype(np.int64))
    model = load(a.model).eval()
    adversary = AutoAttack(model, norm=a.norm, eps=a.eps, version="standard", seed=a.seed, device="cpu")
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        adv = adversary.run_standard_evaluation(x, y, bs=a.bs)
    seconds = time.perf_counter() - start
    log = out.getvalue()
    # "robust accuracy after APGD-CE: 58.00% (total time 10.2 s)": cumulative times, turned into per-component ones.
    stages, before = [], 0.0
    for name, acc, total in re.findall(r"robust accuracy after (\S+): ([0-9.]+)% \(total time ([0-9.]+) s\)", log):
        stages.append({"attack": name.lower(), "robustAccuracy": float(acc) / 100, "seconds": float(total) - before})
        before = float(total)
    with torch.no_grad():
        robust = model(adv).argmax(1).eq(y)
    with open(a.out, "w") as f:
        json.dump({
        "torch": torch.__version__,
        "threads": a.threads,
        "points": int(x.shape[0]),
        "clean": float(re.search(r"initial accuracy: ([0-9.]+)%", log).group(1)) / 100,
        "robustAccuracy": robust.float().mean().item(),
        "robustPoints": "".join("1" if r else "0" for r in robust.tolist()),
        "stages": stages,
        "seconds": seconds,
        "log": log,
    }, f)


if __name__ == "__main__":
    main()
