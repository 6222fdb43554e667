"""An independent implementation of Cohen, Rosenfeld & Kolter's CERTIFY (ICML 2019), in PyTorch, to cross-check
`proxyrobust certify` on the same model and points. Uses statsmodels' Clopper-Pearson interval and scipy's normal
quantile, as the authors' code does; the model is rebuilt from `proxyrobust export --format safetensors`.

    proxyrobust certify --checkpoint CK --sigma 0.25 --n0 100 --n 10000 --n-examples 100 --out ours.tsv --save-points pts.npy
    proxyrobust export --checkpoint CK --format safetensors --out model.safetensors
    python3 certify_reference.py model.safetensors pts.npy 0.25 100 10000 0.001 reference.tsv
    python3 certify_reference.py --compare ours.tsv reference.tsv

The random noise differs from ours (another generator), so individual radii differ by Monte-Carlo noise; certified
accuracies must agree within it.
"""
import sys
import time

import numpy as np
import torch
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from proxyrobust_models import load


def counts(model, x, num, sigma, batch, k):
    out = np.zeros(k, dtype=np.int64)
    with torch.no_grad():
        remaining = num
        while remaining > 0:
            b = min(batch, remaining)
            noisy = x.unsqueeze(0).repeat(b, 1, 1, 1) + torch.randn(b, *x.shape) * sigma
            out += np.bincount(model(noisy).argmax(1).numpy(), minlength=k)
            remaining -= b
    return out


def certify(model, x, k, sigma, n0, n, alpha, batch):
    c_a = int(counts(model, x, n0, sigma, batch, k).argmax())
    n_a = int(counts(model, x, n, sigma, batch, k)[c_a])
    p_a = proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0]
    return (-1, 0.0) if p_a < 0.5 else (c_a, sigma * norm.ppf(p_a))


def summary(path):
    rows = [l.split("\t") for l in open(path).read().splitlines()[1:] if l]
    correct = np.array([r[4] == "1" for r in rows])
    radius = np.array([float(r[3]) for r in rows])
    return {r: float(np.mean(correct & (radius >= r))) for r in (0.0, 0.25, 0.5, 0.75)}, len(rows), np.mean(radius * correct)


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        (a, n, acr_a), (b, _, acr_b) = summary(sys.argv[2]), summary(sys.argv[3])
        for r in a:
            print(f"r={r:.2f}: ours {a[r]:.3f}  reference {b[r]:.3f}  difference {a[r] - b[r]:+.3f}")
        print(f"ACR: ours {acr_a:.4f} reference {acr_b:.4f}")
        sys.exit(0)
    path, points, sigma, n0, n, alpha, out = sys.argv[1:8]
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = load(path).eval()
    images = torch.from_numpy(np.load(points)).permute(0, 3, 1, 2).contiguous()
    labels = np.load(points.replace(".npy", ".labels.npy"))
    k = model.net.fc2.out_features if hasattr(model.net, "fc2") else 10
    with open(out, "w") as f:
        f.write("idx\tlabel\tpredict\tradius\tcorrect\ttime\n")
        for i in range(len(images)):
            t = time.time()
            pred, radius = certify(model, images[i], k, float(sigma), int(n0), int(n), float(alpha), 100)
            f.write(f"{i}\t{labels[i]}\t{pred}\t{radius:.4f}\t{int(pred == labels[i])}\t{time.time() - t:.3f}\n")
