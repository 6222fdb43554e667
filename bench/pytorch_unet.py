#!/usr/bin/python3
"""The diffusion UNet workloads of ProxyRobust.Bench --unet, in Debian's PyTorch 1.13, for ratios measured in one run.

Prints one JSON object: training steps per second (forward, MSE loss, backward, Adam) at --train-batch, and network
evaluations per second without gradients (what a sampler costs per step) at --sample-batch, plus DDIM sampling images
per second at 10 steps (the sampler's own arithmetic included).
usage: /usr/bin/python3 bench/pytorch_unet.py --threads 2 [--base 32] [--mults 1,2,2] [--res-blocks 2] [--train-only]
  [--no-ddim] [--channels-last]
(--train-only: the training steps alone, for bench/onednn-share.sh; --no-ddim: without the sampling, for
bench/unet-pairs.sh; --channels-last: the network and its input in torch.channels_last, which in PyTorch 1.13 was
slower than NCHW for this UNet's training step on the 2-core Xeon of 2026-12-06: 2,426 / 2,076 ms against 2,199 /
1,955, alternated.)
"""
import argparse, json, os, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "crosscheck"))
from proxyrobust_unet import UNet  # noqa: E402


def rate(f, reps, warmup=3):
    # Warm-up calls first (page faults of the first allocations, oneDNN's primitive cache), as ProxyRobust.Bench does.
    for _ in range(warmup):
        f()
    start = time.perf_counter()
    for _ in range(reps):
        f()
    return reps / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--mults", default="1,2,2")
    p.add_argument("--res-blocks", type=int, default=2)
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--sample-batch", type=int, default=250)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-ddim", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = UNet(1, 28, 28, 10, a.base, tuple(int(m) for m in a.mults.split(",")), a.res_blocks, (), 0.1)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 2e-4)
    x = torch.rand(a.train_batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (a.train_batch,))
    abar = torch.cos(torch.linspace(0, 1, 1000) * 3.14159 / 2) ** 2 * 0.999 + 1e-4

    def train_step():
        t = torch.randint(0, 1000, (a.train_batch,))
        noise = torch.randn_like(x)
        ab = abar[t].view(-1, 1, 1, 1)
        z = ab.sqrt() * x + (1 - ab).sqrt() * noise
        if a.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        loss = F.mse_loss(net(z, t, y), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()

    net.train()
    train_steps = rate(train_step, a.reps)
    if a.train_only:
        print(json.dumps({"torch": torch.__version__, "trainStepMilliseconds": 1000 / train_steps}))
        return
    net.eval()
    xs = torch.randn(a.sample_batch, 1, 28, 28)
    ys = torch.randint(0, 10, (a.sample_batch,))

    def evaluation():
        with torch.no_grad():
            net(xs, torch.full((a.sample_batch,), 500), ys)

    evals = rate(evaluation, a.reps)

    def ddim10():
        with torch.no_grad():
            z = torch.randn(a.sample_batch, 1, 28, 28)
            grid = [999 - 100 * i for i in range(10)]
            for i, t in enumerate(grid):
                ab_t = abar[t]
                ab_s = abar[grid[i + 1]] if i + 1 < len(grid) else torch.tensor(1.0)
                eps = net(z, torch.full((a.sample_batch,), t), ys)
                x0 = ((z - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()).clamp(-1, 1)
                eps = (z - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
                z = ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * eps

    ddim = None if a.no_ddim else rate(ddim10, max(1, a.reps // 3), warmup=1)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": a.threads,
        "parameters": sum(p.numel() for p in net.parameters()),
        "trainImagesPerSecond": train_steps * a.train_batch,
        "evaluationsPerSecond": evals * a.sample_batch,
        "ddim10ImagesPerSecond": None if ddim is None else ddim * a.sample_batch,
    }))


if __name__ == "__main__":
    main()
