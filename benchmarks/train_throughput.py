"""Training throughput: genbench's trainer path vs the straightforward reference loop, side by side.

genbench: batches sliced from the uint8 tensor in memory (one permutation per epoch), converted on the fly,
the study's precision (``auto``: bf16 autocast where the CPU computes bf16, else fp32), fused Adam, the study's channels_last switch, genbench's step functions (losses and the
divergence check pulled to the host once per step; one discriminator forward on real and fake together;
generator gradients only in the generator step) and genbench's CPU dropout mask.
reference: the loop the assignment describes, written out here: a ``torch.utils.data.DataLoader`` (shuffle,
2 workers) over a Dataset that converts each sample (ToTensor/Normalize style: uint8 -> float / 255 ->
(x - 0.5) / 0.5), fp32, torch's default Adam and ``nn.Dropout``, ``loss.item()`` after each backward. Same
architectures, batch size 128, Adam with the study's hyper-parameters.

Each model's step is also counted in FLOPs (``torch.utils.flop_counter.FlopCounterMode``, forward + backward
of one step; matmuls and convolutions only) and reported as achieved GFLOP/s next to the machine's measured
matmul peak in fp32 and bf16 (a 2048^3 matmul timed in this run).

    .venv/bin/python benchmarks/train_throughput.py [--steps 40] [--rounds 3] [--models vae gan cgan ddpm]
                                                   [--foreach-adam]

The variants run in alternating timed blocks (genbench, reference, genbench, ...) and the median block is shown,
so a machine that drifts by 10-20% over minutes affects both sides alike. ``--foreach-adam`` adds a column:
genbench's path with torch's default (multi-tensor) Adam instead of the fused one the trainer uses.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from genbench.data import load_dataset
from genbench.data.registry import batches
from genbench.families import build_model
from genbench.models.gan import Dropout as GenbenchDropout
from genbench.studies.config import load_study
from genbench.families import get_family
from genbench.runtime.device import autocast, resolve_precision
from genbench.training.objectives import make_optimizers


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
    y_real = y if model.num_classes else None
    fake = model.generate(z, y_fake)
    # written out as the assignment's notebooks do: D on the real batch, D on the detached fakes, BCE each
    d_real, d_fake = model.discriminate(x, y_real), model.discriminate(fake.detach(), y_fake)
    loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, model.real_label))
              + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    opts["d"].zero_grad()
    loss_d.backward()
    opts["d"].step()
    d_gen = model.discriminate(fake, y_fake)
    loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
    opts["g"].zero_grad()
    loss_g.backward()
    opts["g"].step()
    loss_d.item(), loss_g.item()


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
    ap.add_argument("--steps", type=int, default=40, help="timed steps per block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks per variant; the median is shown")
    ap.add_argument("--models", nargs="+", default=["vae", "gan", "cgan", "ddpm"])
    ap.add_argument("--foreach-adam", action="store_true",
                    help="also time genbench's step with torch's default (multi-tensor, unfused) Adam")
    args = ap.parse_args()
    study = load_study("mnist_four", "quick")
    train = load_dataset("mnist")["train"]
    p32, p16 = peak_gflops(torch.float32), peak_gflops(torch.bfloat16)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128; {args.rounds} alternating "
          f"blocks of {args.steps} timed steps per variant (median shown), 3 warm-up steps each; measured matmul "
          f"peak: fp32 {p32:.0f} GFLOP/s, bf16 {p16:.0f} GFLOP/s")
    print(f"{'model':6} {'genbench img/s':>15} {'reference img/s':>16} {'ratio':>6} {'GFLOP/step':>11} "
          f"{'genbench GFLOP/s':>17} {'% bf16 peak':>12}")
    prec = resolve_precision(study.precision)  # the trainer's arithmetic on this machine (auto: bf16 only if native)
    ac = lambda: autocast(torch.device("cpu"), prec)  # noqa: E731
    print(f"genbench's precision here: {prec} (study: {study.precision})")
    for m in study.models:
        if m.kind not in args.models and m.name not in args.models:
            continue
        variants = {}
        for variant in ("genbench", "foreach", "reference") if args.foreach_adam else ("genbench", "reference"):
            torch.manual_seed(0)
            model, family = build_model(m.kind, m.params)
            model.train()
            if variant == "reference":
                _torch_dropout(model)
                # torch's default Adam
                opts = make_optimizers(get_family(family).parts(model), {**m.optimizer, "fused": False})
                dl = torch.utils.data.DataLoader(PerSampleDataset(train.x.numpy(), train.y.numpy()), batch_size=128,
                                                 shuffle=True, drop_last=True, num_workers=2,
                                                 persistent_workers=True)
                it = _cycle(dl)
                step = lambda x, y, model=model, family=family, opts=opts: reference_step(  # noqa: E731
                    model, family, opts, x, y)
            else:
                if m.channels_last:  # the study's speed switch, as the trainer applies it
                    model.to(memory_format=torch.channels_last)
                opts = make_optimizers(get_family(family).parts(model),
                                       {**m.optimizer, "fused": variant == "genbench"})
                gen = torch.Generator().manual_seed(0)
                it = _cycle(lambda gen=gen: batches(train, 128, gen))
                step = lambda x, y, model=model, family=family, opts=opts, gen=gen: get_family(family).step(  # noqa: E731
                    model, opts, x, y, generator=gen, autocast=ac)
            for _ in range(3):
                step(*next(it))
            variants[variant] = (step, it, [])
        for _ in range(args.rounds):
            for step, it, rates in variants.values():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step(*next(it))
                rates.append(128 * args.steps / (time.perf_counter() - t0))
        med = {k: float(np.median(v[2])) for k, v in variants.items()}
        step, it, _ = variants["genbench"]
        flops = step_flops(step, next(it))
        ours, ref = med["genbench"], med["reference"]
        gflops = flops / 1e9 * ours / 128
        extra = (f"   with torch's default Adam: {med['foreach']:.0f} img/s ({med['foreach'] / ref:.2f}x)"
                 if "foreach" in med else "")
        print(f"{m.name:6} {ours:15.0f} {ref:16.0f} {ours / ref:6.2f} {flops / 1e9:11.2f} {gflops:17.1f} "
              f"{100 * gflops / p16:11.1f}%{extra}", flush=True)
        del variants, it, step


def _torch_dropout(model: torch.nn.Module) -> None:
    """The reference uses ``torch.nn.Dropout``: swap genbench's CPU-mask dropout back (same p)."""
    for name, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, GenbenchDropout):
                setattr(mod, cname, torch.nn.Dropout(child.p))


def _cycle(make):
    """Endless batches from ``make`` (a DataLoader, or a callable returning a fresh iterable per epoch)."""
    while True:
        yield from (make() if callable(make) else make)


if __name__ == "__main__":
    main()
