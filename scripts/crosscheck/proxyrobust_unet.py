"""PyTorch definition of ProxyRobust's diffusion UNet (src/ProxyRobust/Models/UNet.cs), with the same state-dict
names, so that a generator checkpoint's weights load here and the same network can be timed in PyTorch
(bench/pytorch_unet.py). Needs only torch (tested with Debian's python3-torch 1.13).

    from proxyrobust_unet import UNet
    net = UNet(1, 28, 28, 10, base=32, mults=(1, 2, 2), res_blocks=2, attention=(), dropout=0.1)
    out = net(x_t, t, labels)     # labels == 10 means "no label" (classifier-free guidance)
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def groups(ch):
    for g in (32, 16, 8, 4, 2):
        if ch % g == 0 and ch // g >= 4:
            return g
    return 1


def time_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], 1)


class ResBlock(nn.Module):
    def __init__(self, i, o, emb, p):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups(i), i)
        self.conv1 = nn.Conv2d(i, o, 3, padding=1)
        self.embedding = nn.Linear(emb, o)
        self.norm2 = nn.GroupNorm(groups(o), o)
        self.dropout = nn.Dropout(p)
        self.conv2 = nn.Conv2d(o, o, 3, padding=1)
        self.skip = None if i == o else nn.Conv2d(i, o, 1)

    def forward(self, x, e):
        h = self.conv1(F.silu(self.norm1(x))) + self.embedding(F.silu(e))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = nn.GroupNorm(groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x, e):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, 3, c, h * w).unbind(1)
        weights = torch.softmax(q.transpose(1, 2).bmm(k) / math.sqrt(c), -1)
        return x + self.proj(v.bmm(weights.transpose(1, 2)).view(n, c, h, w))


class ResAttention(nn.Module):
    def __init__(self, block, attention):
        super().__init__()
        self.block, self.attention = block, attention

    def forward(self, x, e):
        return self.attention(self.block(x, e), e)


class Resample(nn.Module):
    def __init__(self, ch, down):
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if down else nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, e):
        return self.conv(x) if self.down else self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    def __init__(self, c, h, w, k, base=32, mults=(1, 2, 2), res_blocks=2, attention=(), dropout=0.1):
        super().__init__()
        emb = 4 * base
        self.base = base
        self.timeIn = nn.Linear(base, emb)
        self.timeOut = nn.Linear(emb, emb)
        self.classEmbedding = nn.Embedding(k + 1, emb)
        self.input = nn.Conv2d(c, base, 3, padding=1)

        def block(i, o, side):
            b = ResBlock(i, o, emb, dropout)
            return ResAttention(b, Attention(o)) if side in attention else b

        down, skips, ch, side = [], [base], base, h
        for level, m in enumerate(mults):
            for _ in range(res_blocks):
                down.append(block(ch, base * m, side))
                ch = base * m
                skips.append(ch)
            if level < len(mults) - 1:
                down.append(Resample(ch, True))
                skips.append(ch)
                side //= 2
        self.down = nn.ModuleList(down)
        self.middle = nn.ModuleList([ResBlock(ch, ch, emb, dropout), Attention(ch), ResBlock(ch, ch, emb, dropout)])
        up, self.takes_skip = [], []
        for level in reversed(range(len(mults))):
            for _ in range(res_blocks + 1):
                up.append(block(ch + skips.pop(), base * mults[level], side))
                self.takes_skip.append(True)
                ch = base * mults[level]
            if level > 0:
                up.append(Resample(ch, False))
                self.takes_skip.append(False)
                side *= 2
        self.up = nn.ModuleList(up)
        self.outNorm = nn.GroupNorm(groups(ch), ch)
        self.output = nn.Conv2d(ch, c, 3, padding=1)

    def forward(self, x, t, labels):
        e = self.timeOut(F.silu(self.timeIn(time_embedding(t, self.base)))) + self.classEmbedding(labels)
        h = self.input(x)
        skips = [h]
        for m in self.down:
            h = m(h, e)
            skips.append(h)
        for m in self.middle:
            h = m(h, e)
        for m, takes in zip(self.up, self.takes_skip):
            h = m(torch.cat([h, skips.pop()], 1) if takes else h, e)
        return self.output(F.silu(self.outNorm(h)))
