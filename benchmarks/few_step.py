"""A few-step family against its multi-step parent: shortcut models (Frans et al. 2024) vs flow matching.

Issue 27 asks for a few-step family reported at 1, 2 and 4 NFE, its 2-NFE quality set against the best multi-step
family at 40 NFE, and, where it falls short, its quality against training steps so a reader sees whether compute
would close the gap. This script trains, in one process, from the same initialisation seed on the same batches
(the same images seen: the study's budget unit):

- ``flow``: flow matching (:class:`genbench.models.flow.FlowMatching`), drawn with Euler at 1, 2, 4 NFE and Heun
  at 4 (2 steps) and 40 NFE (20 steps);
- ``shortcut``: the shortcut model (:class:`genbench.models.shortcut.ShortcutModel`, 1/4 of each batch on
  self-consistency targets, which cost two extra no-grad forwards on that quarter), drawn at 1, 2, 4 NFE,

and scores each EMA model at a few points of training (``--checkpoints``) by FD in genbench's MNIST classifier
feature space (FD-clf, bootstrap sd over 20 resamples of the N generated images) and conditional accuracy, against
N seeded test images; ``--inception`` adds Inception FID at the last checkpoint. Training seconds are printed per
model (the shortcut model's extra forwards show there). The network is smaller than the study's and trained for
fewer steps so the comparison fits CPU minutes. Nothing here asserts anything.

    .venv/bin/python benchmarks/few_step.py [--steps 800] [--batch 64] [--widths 16 32 32] [--n 1000]
"""

from __future__ import annotations

import argparse

import torch

from ddpm_per_t import fit, fmt, references, score  # this folder's DDPM benchmark: the shared loop and scoring
from genbench.models.flow import FlowMatching
from genbench.models.shortcut import ShortcutModel

SETTINGS = {
    "flow": [("euler", 1), ("euler", 2), ("euler", 4), ("heun", 2), ("heun", 20)],
    "shortcut": [("shortcut", 1), ("shortcut", 2), ("shortcut", 4), ("shortcut", 8)],
}
NFE = {"euler": 1, "heun": 2, "shortcut": 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--widths", type=int, nargs=3, default=[16, 32, 32])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoints", type=int, default=3, help="score at this many evenly spaced points")
    ap.add_argument("--models", nargs="+", default=list(SETTINGS))
    ap.add_argument("--inception", action="store_true")
    a = ap.parse_args()
    train_ds, clf, real_stats, inc, inc_real, _, _ = references(a.n, a.inception)
    marks = {round(a.steps * (i + 1) / a.checkpoints) for i in range(a.checkpoints)}
    table = {}
    for name in a.models:
        torch.manual_seed(a.seed)
        cls = FlowMatching if name == "flow" else ShortcutModel
        model = cls(widths=tuple(a.widths), num_classes=10, p_uncond=0.1)

        def on_step(i, ema_model, name=name):
            if i not in marks:
                return
            last = i == a.steps
            for sampler, k in SETTINGS[name]:
                row = score(ema_model.eval(), a.n, {"sampler": sampler, "steps": k, "guidance_scale": 1.0}, clf,
                            real_stats, inc if last else None, inc_real)
                table[(name, i, sampler, k)] = row
                print(f"  [{name}] step {i:5d} {sampler:8s} NFE {k * NFE[sampler]:3d}  {fmt(row)}", flush=True)

        _, secs = fit(model, train_ds, steps=a.steps, batch=a.batch, seed=a.seed, name=name, on_step=on_step)
        print(f"[{name}] {a.steps} steps x {a.batch} images: {secs:.0f} s of training", flush=True)
    print(f"\nN = {a.n} generated vs {a.n} test images, widths {a.widths}, batch {a.batch}, seed {a.seed}, guidance 1; "
          f"FD-clf +- bootstrap sd")
    for (name, i, sampler, k), row in sorted(table.items()):
        print(f"{name:9s} step {i:5d} {sampler:8s} NFE {k * NFE[sampler]:3d}  {fmt(row)}")


if __name__ == "__main__":
    main()
