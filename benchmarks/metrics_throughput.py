"""Feature extraction and sampling speed, measured side by side in one run.

- Inception pool3 (the FID network of ASSETS.md, TF1 bilinear resize to 299): images/s in fp32 and in
  bf16 autocast + channels_last (genbench's default), and the FID each gives on the same images (generated
  stand-in: the first N test images vs the next N), so the bf16 switch is kept only if its FID stays within
  0.5% of fp32.
- The in-domain MNIST classifier: images/s (features + softmax).
- Sampling: seconds per 1,000 images of each model kind, untrained weights (cost does not depend on the
  weights), and of the DDPM U-Net per sampler setting.

    .venv/bin/python benchmarks/metrics_throughput.py [--n 200] [--ddpm-n 100]
"""

from __future__ import annotations

import argparse
import time

import torch

from genbench.data import load_dataset
from genbench.metrics.classifier import predict
from genbench.metrics.inception import InceptionFeatures
from genbench.metrics.scores import feature_stats, frechet_distance
from genbench.models import build_model
from genbench.models.classifier import Classifier
from genbench.sampling.bank import generate
from genbench.sampling.draw import nfe
from genbench.studies.config import load_study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="images per Inception measurement")
    ap.add_argument("--ddpm-n", type=int, default=100, help="images per DDPM sampler setting")
    ap.add_argument("--ancestral", action="store_true", help="also time 1,000-step ancestral DDPM sampling")
    args = ap.parse_args()
    test = load_dataset("mnist")["test"]
    n = args.n
    a, b = test.x[:n], test.x[n:2 * n]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    fids = {}
    for prec in ("fp32", "bf16"):
        inc = InceptionFeatures(precision=prec)
        inc(a[:8])  # warm-up
        t0 = time.perf_counter()
        fa = inc(a)
        dt = time.perf_counter() - t0
        fb = inc(b)
        fids[prec] = frechet_distance(*feature_stats(fa), *feature_stats(fb))
        print(f"inception {prec:4}: {n / dt:6.1f} images/s  FID(test[:{n}], test[{n}:{2 * n}]) = {fids[prec]:.4f}")
    print(f"inception bf16 vs fp32 FID: {100 * (fids['bf16'] / fids['fp32'] - 1):+.3f}% (keep bf16 only within 0.5%)")
    clf = Classifier(channels=1, num_classes=10).eval()
    predict(clf, test.x[:100])
    t0 = time.perf_counter()
    predict(clf, test.x)
    print(f"classifier: {len(test) / (time.perf_counter() - t0):8.0f} images/s (10,000 test images)")

    study = load_study("mnist_four", "quick")
    for m in study.models:
        torch.manual_seed(0)
        model, _ = build_model(m.kind, m.params)
        model.eval()
        if m.kind != "ddpm":
            labels = torch.arange(1000) % 10 if m.kind in ("cgan", "flow") else None
            _, s = generate(model, 1000, seed=0, labels=labels, settings=m.sampling or None)
            print(f"sample {m.name:5}: {s:8.3f} s per 1,000 images ({nfe(model, m.sampling or None)} NFE)")
            continue
        settings = [("ddim", 10), ("ddim", 25), ("ddim", 50), ("dpm_solver", 10), ("dpm_solver", 20)]
        if args.ancestral:
            settings.append(("ddpm", 1000))
        labels = torch.arange(args.ddpm_n) % 10
        w = m.sampling["guidance_scale"]
        generate(model, 8, seed=0, labels=torch.arange(8) % 10, settings={"sampler": "ddim", "steps": 5,
                                                                          "guidance_scale": w})
        for sampler, steps in settings:
            kw = {"sampler": sampler, "steps": steps, "guidance_scale": w}
            _, s = generate(model, args.ddpm_n, seed=0, labels=labels, warmup=False, settings=kw)
            print(f"sample ddpm {sampler}-{steps} (w={w:g}, {nfe(model, kw)} NFE): "
                  f"{s:8.1f} s per 1,000 images (N={args.ddpm_n})", flush=True)


if __name__ == "__main__":
    main()
