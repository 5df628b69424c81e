"""Sample banks: generated images saved as uint8 with a manifest, so metrics can be recomputed on exactly the
same images.

``samples/bank.npz``: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,) (-1 = unconditional), ``seed``.
``samples/manifest.json``: seed, n, sampler, steps, NFE, guidance scale, precision, checkpoint sha256,
generation seconds per 1,000 images (measured after warm-up, batched, under inference mode).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from genbench.data.registry import to_uint8
from genbench.device import autocast
from genbench.io import atomic_savez, atomic_write_json, sha256_file


def sampler_info(model) -> dict:
    """Sampler name, steps and network evaluations per image for a model's default sampling."""
    if hasattr(model, "nfe"):
        steps = model.timesteps if model.sampler == "ddpm" else model.sampler_steps
        return {"sampler": model.sampler, "steps": steps, "nfe": model.nfe(),
                "guidance_scale": model.guidance_scale if model.num_classes else None}
    kind = "decoder" if hasattr(model, "latent_dim") else "generator"
    return {"sampler": f"single {kind} pass", "steps": 1, "nfe": 1, "guidance_scale": None}


def balanced_labels(n: int, num_classes: int) -> torch.Tensor | None:
    """0, 1, ..., K-1, 0, 1, ... (n,) int64, or None for unconditional models."""
    return torch.arange(n) % num_classes if num_classes else None


def generate(model, n: int, *, seed: int, precision: str = "bf16", batch: int = 500,
             labels: torch.Tensor | None = None, warmup: bool = True,
             sample_kwargs: dict | None = None) -> tuple[torch.Tensor, float]:
    """Generate n images in batches under inference mode.

    Args:
        model: any genbench generative model (its ``sample`` method).
        n: number of images.
        seed: seeds the generator that draws every random number of the sampling.
        precision: "bf16" (autocast) or "fp32".
        batch: images per forward batch.
        labels: int64 (n,) conditioning labels, or None.
        warmup: run an untimed warm-up batch of 16 images first (set False when the caller warmed up).
        sample_kwargs: extra keyword arguments of ``model.sample`` (diffusion: sampler, steps,
            guidance_scale, eta).

    Returns:
        (uint8 (n, C, H, W), wall seconds per 1,000 images of the timed part).
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    kw = sample_kwargs or {}
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        if warmup:
            wl = labels[:16] if labels is not None else None
            model.sample(min(16, n), y=wl, generator=torch.Generator().manual_seed(seed + 999), **kw)
        out = []
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            m = min(batch, n - i)
            y = labels[i:i + m] if labels is not None else None
            out.append(to_uint8(model.sample(m, y=y, generator=gen, **kw)).cpu())
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
    return torch.cat(out), secs / n * 1000


def write_bank(run_dir: Path, model, images: torch.Tensor, labels: torch.Tensor | None, *, seed: int,
               precision: str, gen_seconds_per_1000: float, batch: int | None = None) -> dict:
    run_dir = Path(run_dir)
    lab = labels.numpy() if labels is not None else -np.ones(len(images), np.int64)
    atomic_savez(run_dir / "samples" / "bank.npz", images=images.numpy(), labels=lab, seed=np.int64(seed))
    manifest = {"n": len(images), "seed": seed, **sampler_info(model), "precision": precision,
                "gen_seconds_per_1000": gen_seconds_per_1000, "batch": batch, "labels": "balanced 0..K-1" if labels is not None
                else "none (unconditional)",
                "checkpoint_sha256": sha256_file(run_dir / "checkpoints" / "last.pt")}
    atomic_write_json(run_dir / "samples" / "manifest.json", manifest)
    return manifest


def read_bank(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor, dict] | None:
    """(images uint8, labels int64, manifest) or None if no bank matches the current checkpoint."""
    run_dir = Path(run_dir)
    bank, man = run_dir / "samples" / "bank.npz", run_dir / "samples" / "manifest.json"
    if not (bank.exists() and man.exists()):
        return None
    manifest = json.loads(man.read_text())
    ck = run_dir / "checkpoints" / "last.pt"
    if ck.exists() and manifest.get("checkpoint_sha256") != sha256_file(ck):
        return None
    with np.load(bank) as z:
        return torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), manifest
