"""PyTorch definitions of ProxyRobust's classifiers, to load a file written by
`proxyrobust export --format safetensors` and evaluate it with other tools (e.g. the original AutoAttack):

    from proxyrobust_models import load
    model = load("model.safetensors").eval()      # input: float32 NCHW in [0,1]; normalisation is inside
    # from autoattack import AutoAttack
    # AutoAttack(model, norm="Linf", eps=0.1, version="standard").run_standard_evaluation(x, y, bs=250)

Needs only torch (tested with Debian's python3-torch 1.13). State-dict names equal ProxyRobust's (docs/EXPORT.md).
Run as a script to compare logits with ProxyRobust's on given images:
    python3 proxyrobust_models.py model.safetensors images.npy logits.npy
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=dtypes[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


class Normalize(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("std", torch.ones(1, c, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


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
    def __init__(self, inp, planes, stride, shortcut_name="shortcut"):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inp)
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut_name = None
        if stride != 1 or inp != planes:
            self.shortcut_name = shortcut_name
            setattr(self, shortcut_name, nn.Conv2d(inp, planes, 1, stride, bias=False))

    def forward(self, x):
        o = F.relu(self.bn1(x))
        sc = getattr(self, self.shortcut_name)(o) if self.shortcut_name else x
        o = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return o + sc


class PreActResNet18(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 64, 3, 1, 1, bias=False)
        layers, inp = [], 64
        for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks = []
            for i in range(2):
                blocks.append(PreActBlock(inp, planes, stride if i == 0 else 1))
                inp = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, k)

    def forward(self, x):
        h = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.linear(F.adaptive_avg_pool2d(F.relu(self.bn(h)), 1).flatten(1))


class WideResNet(nn.Module):
    def __init__(self, depth, widen, c, k):
        super().__init__()
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(c, w[0], 3, 1, 1, bias=False)

        def group(i, o, s):
            return nn.Sequential(*[PreActBlock(i if j == 0 else o, o, s if j == 0 else 1, "convShortcut") for j in range(n)])

        self.block1, self.block2, self.block3 = group(w[0], w[1], 1), group(w[1], w[2], 2), group(w[2], w[3], 2)
        self.bn1 = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], k)

    def forward(self, x):
        h = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn1(h)), 1).flatten(1))


class Classifier(nn.Module):
    def __init__(self, arch):
        super().__init__()
        # camelCase since export format 2 (ProxyRobust's JSON convention); PascalCase in format 1
        a = {key[0].lower() + key[1:]: value for key, value in arch.items()}
        name, c, h, w, k = a["name"], a["inChannels"], a["height"], a["width"], a["numClasses"]
        self.normalize = Normalize(c)
        if name == "small-cnn":
            self.net = SmallCnn(c, h, w, k)
        elif name == "preact-resnet18":
            self.net = PreActResNet18(c, k)
        else:
            _, depth, widen = name.split("-")
            self.net = WideResNet(int(depth), int(widen), c, k)

    def forward(self, x):
        return self.net(self.normalize(x))


def load(path):
    tensors, meta = read_safetensors(path)
    model = Classifier(json.loads(meta["arch"]))
    model.load_state_dict(tensors, strict=True)
    return model


if __name__ == "__main__":
    model = load(sys.argv[1]).eval()
    images = np.load(sys.argv[2]).astype(np.float32)  # N x H x W x C in [0,1] (as written by eval --save-adv)
    expected = np.load(sys.argv[3])
    with torch.no_grad():
        logits = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()).numpy()
    err = np.abs(logits - expected).max()
    print(f"max |logit difference| = {err:.2e} over {logits.shape[0]} images; "
          f"predictions agree on {(logits.argmax(1) == expected.argmax(1)).mean():.2%}")
    sys.exit(0 if err < 1e-3 * max(1.0, np.abs(expected).max()) else 1)
