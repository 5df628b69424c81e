"""Training speed switches, each against the trainer's default, side by side in one process.

For each model of the MNIST study (quick profile settings, batch 128) the trainer's step (genbench's step
functions, batches sliced from the in-memory uint8 tensor, fused Adam) runs in these variants:

- ``default``: the study's settings (bf16 autocast, NCHW);
- ``fp32``: autocast off;
- ``channels_last``: the model's 4-D weights in NHWC memory format (``channels_last: true`` in a study file);
- ``compile``: ``torch.compile`` of each sub-network (``compile: true``); its compilation time (the first two
  steps, minus two default steps) is printed separately.

The variants run in alternating timed blocks (default, fp32, channels_last, compile, default, ...) and the
median block is shown, so a machine that drifts by 10-20% over minutes affects every variant alike. A switch is
worth turning on where its ratio is clearly above 1 and (for ``compile``) the saving over a run repays the
compilation time. Nothing here asserts a speed.

    .venv/bin/python benchmarks/train_switches.py [--steps 30] [--rounds 3] [--models vae ddpm]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from genbench.data import load_dataset
from genbench.data.registry import batches
from genbench.families import build_model
from genbench.studies.config import load_study
from genbench.training.loop import _compile
from genbench.families import get_family
from genbench.training.objectives import make_optimizers


def _cycle(make):
    while True:
        yield from make()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30, help="timed steps per block")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["vae", "ddpm"])
    ap.add_argument("--variants", nargs="+", default=["default", "fp32", "channels_last", "compile"])
    args = ap.parse_args()
    study = load_study("mnist_four", "quick")
    train = load_dataset("mnist")["train"]
    tmp = tempfile.mkdtemp(prefix="genbench-switches-")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128; {args.rounds} alternating "
          f"blocks of {args.steps} timed steps per variant (median shown)")
    for m in study.models:
        if m.name not in args.models:
            continue
        runs, compile_s = {}, None
        for v in args.variants:
            torch.manual_seed(0)
            model, family = build_model(m.kind, m.params)
            model.train()
            if v == "channels_last":
                model.to(memory_format=torch.channels_last)
            opts = make_optimizers(get_family(family).parts(model), m.optimizer)
            if v == "compile":
                _compile(model, tmp)
            prec = "fp32" if v == "fp32" else m.precision
            ac = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if prec == "bf16"
                  else (lambda: torch.autocast("cpu", enabled=False)))
            gen = torch.Generator().manual_seed(0)
            it = _cycle(lambda gen=gen: batches(train, 128, gen))
            step = (lambda x, y, model=model, family=family, opts=opts, gen=gen, ac=ac:  # noqa: E731
                    get_family(family).step(model, opts, x, y, generator=gen, autocast=ac))
            t0 = time.perf_counter()
            for _ in range(2):
                step(*next(it))
            first = time.perf_counter() - t0
            for _ in range(2):
                step(*next(it))
            runs[v] = (step, it, [], first)
        for _ in range(args.rounds):
            for step, it, rates, _ in runs.values():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step(*next(it))
                rates.append(128 * args.steps / (time.perf_counter() - t0))
        med = {v: float(np.median(r[2])) for v, r in runs.items()}
        base = med["default"]
        cells = []
        for v in args.variants:
            cell = f"{v} {med[v]:.0f} img/s ({med[v] / base:.2f}x)"
            if v == "compile":
                compile_s = runs[v][3] - 2 * 128 / base
                steps_run = m.epochs * (len(train) // m.batch_size)
                saved = steps_run * 128 * (1 / base - 1 / med[v])
                cell += f", compilation {compile_s:.0f} s vs {saved:.0f} s saved over the quick run's {steps_run} steps"
            cells.append(cell)
        print(f"{m.name:5} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
