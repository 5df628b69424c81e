"""Training throughput: genbench's trainer path vs the straightforward reference loop, side by side.

genbench: batches sliced from the uint8 tensor in memory, converted on the fly, bf16 autocast.
reference: ``torch.utils.data.DataLoader`` over a Dataset that converts each sample (ToTensor/Normalize
style: uint8 -> float / 255 -> (x - 0.5) / 0.5), fp32. Same architectures, batch size 128, optimisers and
step functions. Prints images/s for both and their ratio, measured in one process, one after the other.

    .venv/bin/python benchmarks/train_throughput.py [--steps 30] [--models vae gan cgan ddpm]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from genbench.data import load_dataset
from genbench.data.registry import batches
from genbench.models import build_model
from genbench.studies.config import load_study
from genbench.training.objectives import STEPS, make_optimizers


class PerSampleDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = torch.from_numpy(self.x[i]).float().div(255.0)  # ToTensor
        return (img - 0.5) / 0.5, int(self.y[i])  # Normalize((0.5,), (0.5,))


def time_steps(step_fn, model, opts, batch_iter, steps: int, autocast, warmup: int = 3) -> float:
    gen = torch.Generator().manual_seed(0)
    it = iter(batch_iter)
    for _ in range(warmup):
        x, y = next(it)
        step_fn(model, opts, x, y, generator=gen, autocast=autocast)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        x, y = next(it)
        step_fn(model, opts, x, y, generator=gen, autocast=autocast)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=["vae", "gan", "cgan", "ddpm"])
    args = ap.parse_args()
    study = load_study("mnist_four", "quick")
    train = load_dataset("mnist")["train"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128, {args.steps} timed steps")
    print(f"{'model':6} {'genbench img/s':>15} {'reference img/s':>16} {'ratio':>6}")
    for m in study.models:
        if m.kind not in args.models and m.name not in args.models:
            continue
        rows = {}
        for label, bf16, loader in (("genbench", True, "memory"), ("reference", False, "dataloader")):
            torch.manual_seed(0)
            model, family = build_model(m.kind, m.params)
            model.train()
            opts = make_optimizers(model, family, m.optimizer)
            if loader == "memory":
                it = batches(train, 128, torch.Generator().manual_seed(0))
            else:
                ds = PerSampleDataset(train.x.numpy(), train.y.numpy())
                it = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, drop_last=True)
            ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
            rows[label] = time_steps(STEPS[family], model, opts, it, args.steps, ac)
        print(f"{m.name:6} {rows['genbench']:15.0f} {rows['reference']:16.0f} {rows['genbench'] / rows['reference']:6.2f}")


if __name__ == "__main__":
    main()
