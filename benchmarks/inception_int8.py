"""INT8 Inception (NNCF post-training quantization, genbench.metrics.inception_int8) vs OpenVINO fp32, side by side
in one run: images/s in alternating blocks and the FID / KID each backend gives on the same image sets.

Sets (MNIST, N images each, seeded): the reference (a class-stratified random N of the test split, as a study's),
the real-data floor (a random N of the held-out training images, never trained on or calibrated on) and two
"generated" stand-ins made deterministically from other held-out images: additive Gaussian noise (sigma 40 grey
levels, clipped) and a 3 x 3 box blur. Every backend scores the very same uint8 images, so the FID gaps are the
backends' numerics alone. The adoption rule (the one the OpenVINO bf16 backend meets, tests/test_known_answers.py):
FID within 0.5% of fp32 on real MNIST; the benchmark also checks that the three sets keep their order.

Timing: each set is extracted by every backend in turn, the order alternating from set to set; a backend's rate is
the median of its blocks (images / seconds), and its ratio to fp32 the median of the per-block ratios (the two runs
of a block are back to back, so a load that changes during the run hits both alike). bf16 is timed
only where the CPU computes it natively (AVX512-BF16 / AMX): elsewhere OpenVINO emulates it and it is never chosen.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/inception_int8.py [--n 200] [--repeat 2]

The INT8 model is built on first use into GENBENCH_HOME (minutes; the build time is printed) and loaded after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from genbench.data import load_dataset
from genbench.metrics.inception import InceptionFeatures
from genbench.metrics.manifold import kid
from genbench.metrics.reference import reference_subset
from genbench.metrics.scores import fid_from_features
from genbench.runtime.device import native_bf16


def stand_ins(holdout, n: int) -> dict[str, torch.Tensor]:
    """The real floor and two degraded sets, from disjoint random held-out images (seed 1)."""
    idx = torch.as_tensor(np.random.default_rng(1).permutation(len(holdout.x))[:3 * n])
    floor, noisy, blurred = holdout.x[idx[:n]], holdout.x[idx[n:2 * n]], holdout.x[idx[2 * n:]]
    g = torch.Generator().manual_seed(2)
    noisy = (noisy.float() + 40 * torch.randn(noisy.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    blurred = F.avg_pool2d(blurred.float(), 3, stride=1, padding=1, count_include_pad=False).round().to(torch.uint8)
    return {"real floor": floor, "noise 40": noisy, "blur 3x3": blurred}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="images per set")
    ap.add_argument("--repeat", type=int, default=1, help="extra timing-only rounds over the sets")
    args = ap.parse_args()
    n = args.n
    splits = load_dataset("mnist")
    test = splits["test"]
    ref = test.x[torch.as_tensor(reference_subset(test, n, 0))]
    sets = {"reference": ref, **stand_ins(splits["holdout"], n)}

    t0 = time.perf_counter()
    backends = {"fp32": InceptionFeatures(backend="openvino", precision="fp32")}
    print(f"openvino fp32 ready in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    backends["int8"] = InceptionFeatures(backend="openvino", precision="int8")
    prov = backends["int8"].provenance()
    print(f"openvino int8 ready in {time.perf_counter() - t0:.1f} s: {prov}", flush=True)
    if prov["precision"] != "int8":
        print("int8 unavailable (see the line above): nothing to compare")
        return
    if native_bf16():
        backends["bf16"] = InceptionFeatures(backend="openvino", precision="bf16")
    else:
        print("bf16: not native on this CPU (emulated), skipped")
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"N = {n} per set, load average {os.getloadavg()[0]:.2f} at start", flush=True)

    names = list(backends)
    for inc in backends.values():
        inc(ref[:8])  # warm-up
    feats: dict[str, dict[str, np.ndarray]] = {b: {} for b in names}
    rates: dict[str, list[float]] = {b: [] for b in names}
    rounds = [(s, True) for s in sets] + [(s, False) for _ in range(args.repeat) for s in sets]
    for k, (s, keep) in enumerate(rounds):
        order = names if k % 2 == 0 else names[::-1]
        for b in order:
            t = time.perf_counter()
            f = backends[b](sets[s])
            rates[b].append(len(sets[s]) / (time.perf_counter() - t))
            if keep:
                feats[b][s] = f
        print(f"  block {k + 1}/{len(rounds)} ({s}, order {' -> '.join(order)}): "
              + ", ".join(f"{b} {rates[b][-1]:.1f}" for b in names) + " images/s", flush=True)

    med = {b: statistics.median(r) for b, r in rates.items()}
    print(f"\nimages/s, median of {len(rounds)} alternating blocks of {n} images, {threads} threads, load average "
          f"{os.getloadavg()[0]:.2f} at the end:")
    for b in names:
        paired = statistics.median(x / y for x, y in zip(rates[b], rates["fp32"]))  # same block, same load
        print(f"  openvino {b:5}: {med[b]:6.1f} images/s; per-block ratio to fp32: median {paired:.2f}x "
              f"(blocks: {', '.join(f'{x / y:.2f}' for x, y in zip(rates[b], rates['fp32']))})")
    print(f"\nFID / KID vs the reference ({n} test images), N = {n} per set, the same images for every backend:")
    print(f"  {'set':11} " + " ".join(f"{'FID ' + b:>10}" for b in names) + "   gap vs fp32      "
          + " ".join(f"{'KID ' + b:>10}" for b in names))
    fids: dict[str, dict[str, float]] = {b: {} for b in names}
    worst = 0.0
    for s in sets:
        if s == "reference":
            continue
        row, kids = [], []
        for b in names:
            fids[b][s] = fid_from_features(feats[b][s], feats[b]["reference"])
            kids.append(kid(feats[b][s], feats[b]["reference"], subsets=50, subset_size=min(n, 100), seed=0)[0])
            row.append(fids[b][s])
        gaps = [100 * (v / fids["fp32"][s] - 1) for v in row[1:]]
        worst = max([worst] + [abs(g) for g in gaps])
        print(f"  {s:11} " + " ".join(f"{v:10.4f}" for v in row) + "   "
              + " ".join(f"{g:+.3f}%" for g in gaps).ljust(16) + " " + " ".join(f"{v:10.5f}" for v in kids))
    ranks = {b: sorted(fids[b], key=fids[b].get) for b in names}
    same = all(r == ranks["fp32"] for r in ranks.values())
    print(f"\nworst |FID gap| vs fp32: {worst:.3f}% (rule: < 0.5%) -> {'meets' if worst < 0.5 else 'FAILS'} the rule; "
          f"set order {'preserved' if same else 'CHANGED'}: {ranks}")


if __name__ == "__main__":
    main()
