"""Sample banks: generated images saved as uint8 with a manifest, so metrics can be recomputed on exactly the
same images.

``samples/bank.npz``: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,) (-1 = unconditional), ``seed``.
``samples/manifest.json``: seed, n, sampler, steps, NFE, guidance scale, precision, checkpoint sha256,
generation seconds per 1,000 images (measured after warm-up, batched, under inference mode), the batch size,
the seeding scheme and how many data-parallel ranks generated the bank (``gen_ranks``).

Seeding: batch ``b`` (images ``b * batch ... (b + 1) * batch - 1``) draws every random number from its own
generator, :func:`batch_generator` ``(seed, b)``. An image therefore depends on the seed, the batch size and
its position only, not on which process generated its batch: under ``torchrun`` / ``accelerate launch`` each
rank generates a contiguous run of batches and the gathered bank equals the single-process bank exactly.
Batch 0 is seeded with ``seed`` itself, so a bank of one batch (e.g. ``genbench sample``) is the same as with
the earlier single-generator scheme; later batches differ from banks written before per-batch seeding.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genbench.data.registry import to_uint8
from genbench.runtime.device import autocast
from genbench.io import atomic_savez, atomic_write_json, sha256_file
from genbench.runtime.distributed import Dist

SEEDING = "per batch: batch 0 from seed, batch b > 0 from numpy SeedSequence([seed, b])"


def balanced_labels(n: int, num_classes: int) -> torch.Tensor | None:
    """0, 1, ..., K-1, 0, 1, ... (n,) int64, or None for unconditional models."""
    return torch.arange(n) % num_classes if num_classes else None


def batch_generator(seed: int, b: int) -> torch.Generator:
    """The CPU generator of generation batch ``b``: seeded with ``seed`` for b = 0, else with 63 bits of
    ``numpy.random.SeedSequence([seed, b])`` (well mixed, so batches of nearby seeds do not share streams).

    Raises:
        ValueError: ``seed`` or ``b`` is negative.
    """
    if seed < 0 or b < 0:
        raise ValueError(f"seed and batch index must be >= 0, got seed={seed}, b={b}")
    if b == 0:
        return torch.Generator().manual_seed(seed)
    state = np.random.SeedSequence([seed, b]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def generate(model, n: int, *, seed: int, precision: str = "auto", batch: int = 500,
             labels: torch.Tensor | None = None, warmup: bool = True,
             draw=None, dist: Dist | None = None) -> tuple[torch.Tensor, float]:
    """Generate n images in batches under inference mode, optionally sharded over data-parallel ranks.

    Args:
        model: any genbench generative model, on this rank's device.
        n: number of images (>= 1).
        seed: with the batch index, seeds each batch's generator (:func:`batch_generator`), which draws every
            random number of that batch's sampling.
        precision: "bf16" (autocast), "fp32", or "auto" (:func:`genbench.runtime.device.resolve_precision`).
        batch: images per forward batch (>= 1); part of the images' identity (it sets the batch boundaries).
        labels: int64 (n,) conditioning labels, or None.
        warmup: run an untimed warm-up batch of 16 images first (set False when the caller warmed up).
        draw: ``draw(model, m, *, y, generator) -> float32 (m, C, H, W) in [-1, 1]``, how to draw one batch:
            :func:`genbench.families.drawer` of the model's sampler settings; None draws with the model's own
            ``sample(m, y=y, generator=generator)`` (one-pass models).
        dist: data-parallel context. When active (world > 1) every rank must call this with the same
            arguments; each generates its contiguous run of batches (:meth:`Dist.batch_starts`) and the
            images are all-gathered, so every rank returns the full bank, equal to a single process's.
            None or a single-process context: one process generates every batch.

    Returns:
        (uint8 (n, C, H, W) on the CPU, wall seconds per 1,000 images of the timed part). Under DDP the time
        is the slowest rank's generation of its share (the ranks start together after their warm-ups), so it
        is the wall time of the sharded generation, divided by the whole n.

    Raises:
        ValueError: ``batch`` < 1.
    """
    dist = dist or Dist()
    if draw is None:
        def draw(model, m, *, y=None, generator=None):
            return model.sample(m, y=y, generator=generator)
    device = next(model.parameters()).device
    starts = dist.batch_starts(n, batch)
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        if warmup:
            wl = labels[:16] if labels is not None else None
            draw(model, min(16, n), y=wl, generator=torch.Generator().manual_seed(seed + 999))
        out = []
        dist.barrier()  # the timed part starts together on every rank
        t0 = time.perf_counter()
        for i in starts:
            m = min(batch, n - i)
            y = labels[i:i + m] if labels is not None else None
            out.append(to_uint8(draw(model, m, y=y, generator=batch_generator(seed, i // batch))).cpu())
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
    images = dist.gather_rows(torch.cat(out) if out else None)
    secs = max(dist.gather_object(secs))
    return images, secs / n * 1000


def save_images(npz: Path, manifest_path: Path, images: torch.Tensor, labels: torch.Tensor | None, *, seed: int,
                manifest: dict) -> dict:
    """Write a set of generated images and its manifest, each atomically: ``npz`` holds ``images`` uint8
    (N, C, H, W), ``labels`` int64 (N,) (-1 = unconditional) and ``seed``; ``manifest_path`` the JSON
    ``manifest`` (returned). Used for the study's sample bank and for each sweep setting's images. Call it on one
    process only (rank 0 under DDP)."""
    lab = labels.numpy() if labels is not None else -np.ones(len(images), np.int64)
    atomic_savez(Path(npz), images=images.numpy(), labels=lab, seed=np.int64(seed))
    atomic_write_json(Path(manifest_path), manifest)
    return manifest


def load_images(npz: Path, manifest_path: Path, want: dict) -> tuple[torch.Tensor, torch.Tensor, dict] | None:
    """(images uint8, labels int64, manifest) saved by :func:`save_images`, or None when either file is missing
    or the manifest differs from ``want`` in any of its keys (e.g. another checkpoint sha256, sampler or N)."""
    npz, manifest_path = Path(npz), Path(manifest_path)
    if not (npz.exists() and manifest_path.exists()):
        return None
    try:  # a damaged bank (cut by a full disk, edited) is a cache: generated again, with a log line
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in want.items()):
            return None
        with np.load(npz, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
        if not (images.dtype == np.uint8 and images.ndim == 4 and labels.shape == (len(images),)
                and labels.dtype == np.int64 and manifest.get("n", len(images)) == len(images)):
            raise ValueError(f"images {images.dtype} {images.shape}, labels {labels.dtype} {labels.shape}")
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, KeyError, ValueError, UnicodeDecodeError...
        print(f"[sample] {npz.parent} holds a damaged sample bank ({type(e).__name__}); generating it again",
              file=sys.stderr, flush=True)
        return None
    return torch.from_numpy(images), torch.from_numpy(labels), manifest


def write_bank(run_dir: Path, info: dict, images: torch.Tensor, labels: torch.Tensor | None, *, seed: int,
               precision: str, gen_seconds_per_1000: float, batch: int | None = None, ranks: int = 1,
               settings: dict | None = None) -> dict:
    """Save ``samples/bank.npz`` and ``samples/manifest.json`` (atomically) and return the manifest.

    Args:
        info: the sampler fields of the manifest (:func:`genbench.families.sampler_info`: sampler, steps, NFE,
            guidance scale).
        images: uint8 (N, C, H, W) from :func:`generate`; labels: int64 (N,) or None (unconditional).
        seed, precision, gen_seconds_per_1000, batch: what :func:`generate` was called with and measured.
        ranks: how many data-parallel processes generated the bank (``gen_ranks``; the time is their wall time).
        settings: the sampler settings the bank was drawn with (diffusion-family models), kept in the manifest
            as ``sampling`` so that :func:`read_bank` reuses a bank only for the same settings.

    Call it on one process only (rank 0 under DDP).
    """
    run_dir = Path(run_dir)
    manifest = {"n": len(images), "seed": seed, **info, "sampling": settings or None,
                "precision": precision,
                "gen_seconds_per_1000": gen_seconds_per_1000, "batch": batch, "gen_ranks": ranks,
                "seeding": SEEDING, "labels": "balanced 0..K-1" if labels is not None
                else "none (unconditional)",
                "checkpoint_sha256": sha256_file(run_dir / "checkpoints" / "last.pt")}
    return save_images(run_dir / "samples" / "bank.npz", run_dir / "samples" / "manifest.json", images, labels,
                       seed=seed, manifest=manifest)


def read_bank(run_dir: Path, settings: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict] | None:
    """(images uint8, labels int64, manifest) or None if no bank matches the current checkpoint and the sampler
    ``settings`` (None for one-pass models)."""
    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints" / "last.pt"
    want = {"checkpoint_sha256": sha256_file(ck)} if ck.exists() else {}
    want["sampling"] = settings or None
    return load_images(run_dir / "samples" / "bank.npz", run_dir / "samples" / "manifest.json", want)
