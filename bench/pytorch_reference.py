#!/usr/bin/python3
"""The same workloads as ProxyRobust.Bench, in Debian's PyTorch 1.13 (python3-torch), for ratios measured in one run.

Prints one JSON object. Workloads: matmul 2048 fp32; PGD-10 adversarial-training steps (l-inf, eps/4 steps, attack in
eval mode without weight gradients, then SGD on the adversarial batch) for the small CNN on 1x28x28 and PreAct
ResNet-18 on 3x32x32, on random data (throughput does not depend on the pixel values).
usage: /usr/bin/python3 bench/pytorch_reference.py --threads 2 [--steps 6] [--channels-last]
The benchmark runs it twice: as Debian ships it, and "tuned" with the two generic settings ProxyRobust applies itself
(channels-last ResNet, and glibc malloc kept from returning tensor memory to the kernel, via GLIBC_TUNABLES).
"""
import argparse, json, os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F


# The models are the ones docs/EXPORT.md defines (the same definitions serve the export cross-check).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "crosscheck"))
from proxyrobust_models import PreActResNet18, SmallCnn  # noqa: E402


def pgd(model, x, y, eps, step, steps):
    was = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y, reduction="sum")
        g, = torch.autograd.grad(loss, [adv])
        adv = torch.min(torch.max(adv.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train(was)
    return adv.detach()


def at_step_rate(model, shape, batch, steps, eps=8 / 255, channels_last=False):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch, *shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    def one():
        adv = pgd(model, x, y, eps, eps / 4, 10)
        loss = F.cross_entropy(model(adv), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for _ in range(2):
        one()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    return batch * steps / (time.perf_counter() - t)


def matmul_gflops(n=2048, reps=10):
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    times.sort()
    return 2 * n ** 3 / times[reps // 2] / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--only", default="")
    ap.add_argument("--channels-last", action="store_true",
                    help="PreAct ResNet-18 model and batches in torch.channels_last (as ProxyRobust keeps them)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "threads": args.threads, "matmul2048Gflops": matmul_gflops()}
    for name, make, shape in [("small-cnn", lambda: SmallCnn(1, 28, 28, 10), (1, 28, 28)),
                              ("preact-resnet18", lambda: PreActResNet18(3, 10), (3, 32, 32))]:
        if args.only and args.only != name:
            continue
        for batch in (32, 128):
            steps = args.steps if name == "preact-resnet18" else args.steps * 10
            out[f"pgd10at/{name}/{batch}"] = at_step_rate(make(), shape, batch, steps,
                                                          channels_last=args.channels_last and name == "preact-resnet18")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
