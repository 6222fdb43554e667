#!/usr/bin/python3
"""The same workloads as ProxyRobust.Bench, in Debian's PyTorch 1.13 (python3-torch), for ratios measured in one run.

Prints one JSON object. Workloads: matmul 2048 fp32; PGD-10 adversarial-training steps (l-inf, eps/4 steps, attack in
eval mode without weight gradients, then SGD on the adversarial batch) for the small CNN on 1x28x28 and PreAct
ResNet-18 on 3x32x32, on random data (throughput does not depend on the pixel values).
usage: /usr/bin/python3 bench/pytorch_reference.py --threads 2 [--steps 6]
"""
import argparse, json, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCnn(nn.Module):
    def __init__(self, c, h, w, k):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (h // 4) * (w // 4), 128)
        self.fc2 = nn.Linear(128, k)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        o = F.relu(self.bn1(x))
        sc = self.shortcut(o) if self.shortcut is not None else x
        o = self.conv1(o)
        return self.conv2(F.relu(self.bn2(o))) + sc


class PreActResNet18(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 64, 3, 1, 1, bias=False)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, k)

    def forward(self, x):
        o = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(o, 1).flatten(1))


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


def at_step_rate(model, shape, batch, steps, eps=8 / 255):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch, *shape)
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
            out[f"pgd10at/{name}/{batch}"] = at_step_rate(make(), shape, batch, steps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
