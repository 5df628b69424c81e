"""Training throughput: genbench's trainer path vs the straightforward reference loop, side by side.

genbench: batches sliced from the uint8 tensor in memory (one permutation per epoch), converted on the fly,
bf16 autocast, genbench's step functions (losses and the divergence check pulled to the host once per step).
reference: the loop the assignment describes, written out here: a ``torch.utils.data.DataLoader`` (shuffle,
2 workers) over a Dataset that converts each sample (ToTensor/Normalize style: uint8 -> float / 255 ->
(x - 0.5) / 0.5), fp32, ``loss.item()`` after each backward. Same architectures, batch size 128, Adam with
the study's hyper-parameters.

Each model's step is also counted in FLOPs (``torch.utils.flop_counter.FlopCounterMode``, forward + backward
of one step; matmuls and convolutions only) and reported as achieved GFLOP/s next to the machine's measured
matmul peak in fp32 and bf16 (a 2048^3 matmul timed in this run).

    .venv/bin/python benchmarks/train_throughput.py [--steps 40] [--models vae gan cgan ddpm] [--fused-adam]

``--fused-adam`` adds a column: genbench's path with ``torch.optim.Adam(..., fused=True)`` (a candidate switch,
not the trainer's default).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

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


def reference_step(model, family: str, opts: dict, x, y) -> None:
    """The straightforward fp32 step: forward, backward, step, ``.item()`` to log."""
    if family in ("vae", "diffusion"):
        loss = model.training_losses(x, y if model.num_classes else None)["loss"]
        opts["model"].zero_grad()
        loss.backward()
        opts["model"].step()
        loss.item()
        return
    b = x.shape[0]
    z = torch.randn(b, model.z_dim)
    y_fake = torch.randint(0, model.num_classes, (b,)) if model.num_classes else None
    fake = model.generate(z, y_fake)
    d = model.discriminator_losses(x, y if model.num_classes else None, fake, y_fake)
    opts["d"].zero_grad()
    d["loss"].backward()
    opts["d"].step()
    g = model.generator_losses(fake, y_fake)
    opts["g"].zero_grad()
    g["loss"].backward()
    opts["g"].step()
    d["loss"].item(), g["loss"].item()


def peak_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def step_flops(step, batch) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        step(*batch)
    return fc.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--models", nargs="+", default=["vae", "gan", "cgan", "ddpm"])
    ap.add_argument("--fused-adam", action="store_true", help="also time genbench's step with fused Adam")
    args = ap.parse_args()
    study = load_study("mnist_four", "quick")
    train = load_dataset("mnist")["train"]
    p32, p16 = peak_gflops(torch.float32), peak_gflops(torch.bfloat16)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128, {args.steps} timed steps "
          f"after 3 warm-up steps; measured matmul peak: fp32 {p32:.0f} GFLOP/s, bf16 {p16:.0f} GFLOP/s")
    print(f"{'model':6} {'genbench img/s':>15} {'reference img/s':>16} {'ratio':>6} {'GFLOP/step':>11} "
          f"{'genbench GFLOP/s':>17} {'% bf16 peak':>12}")
    ac = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    for m in study.models:
        if m.kind not in args.models and m.name not in args.models:
            continue
        fused = None
        for variant in (("default", "fused") if args.fused_adam else ("default",)):
            torch.manual_seed(0)
            model, family = build_model(m.kind, m.params)
            model.train()
            opts = make_optimizers(model, family, m.optimizer)
            if variant == "fused":
                opts = {k: torch.optim.Adam(o.param_groups[0]["params"], lr=o.defaults["lr"],
                                            betas=o.defaults["betas"], fused=True) for k, o in opts.items()}
            gen = torch.Generator().manual_seed(0)
            it = iter(batches(train, 128, gen))
            step = lambda x, y: STEPS[family](model, opts, x, y, generator=gen, autocast=ac)  # noqa: E731
            for _ in range(3):
                step(*next(it))
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(*next(it))
            rate = 128 * args.steps / (time.perf_counter() - t0)
            if variant == "default":
                ours, flops = rate, step_flops(step, next(it))
            else:
                fused = rate

        torch.manual_seed(0)
        model, family = build_model(m.kind, m.params)
        model.train()
        opts = make_optimizers(model, family, m.optimizer)
        dl = torch.utils.data.DataLoader(PerSampleDataset(train.x.numpy(), train.y.numpy()), batch_size=128,
                                         shuffle=True, drop_last=True, num_workers=2, persistent_workers=True)
        it = iter(dl)
        for _ in range(3):
            reference_step(model, family, opts, *next(it))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            reference_step(model, family, opts, *next(it))
        ref = 128 * args.steps / (time.perf_counter() - t0)
        del it, dl
        gflops = flops / 1e9 * ours / 128
        extra = f"   fused Adam: {fused:.0f} img/s ({fused / ref:.2f}x)" if fused else ""
        print(f"{m.name:6} {ours:15.0f} {ref:16.0f} {ours / ref:6.2f} {flops / 1e9:11.2f} {gflops:17.1f} "
              f"{100 * gflops / p16:11.1f}%{extra}", flush=True)


if __name__ == "__main__":
    main()
