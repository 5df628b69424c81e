"""``genbench sample``: draw images from a trained run and save a PNG grid (the default), or export them as one
PNG per image (``--png DIR``, the layout torch-fidelity and clean-fid read) and/or an ``.npz`` (``--npz FILE``);
``--bank`` exports the run's saved sample bank (the images its metrics were computed on) instead of drawing.
The export layout: :mod:`genbench.sampling.export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genbench.cli.checks import MAX_GUIDANCE, check_memory_sample, combination, image_numel, positive
from genbench.errors import GenbenchError

_DRAW_OPTIONS = ("n", "label", "sampler", "steps", "seed", "batch", "guidance")


def sample(ctx: typer.Context, run_dir: Path,
           n: int = typer.Option(10, "--n", "-n", help="number of images (-n under torchrun, whose own options "
                                 "make --n ambiguous)"),
           label: Optional[int] = typer.Option(None, help="class label for conditional models"),
           sampler: Optional[str] = typer.Option(None, help="ddpm | ddim | dpm_solver | dpm_solver_lu "
                                                 "(diffusion), euler | heun (flow), shortcut; default: the run's "
                                                 "`sampling:` settings"),
           steps: Optional[int] = typer.Option(None), seed: int = typer.Option(42),
           batch: Optional[int] = typer.Option(None, help="images per batch, each seeded from (seed, batch index); "
                                                "default: all n in one batch"),
           guidance: Optional[float] = typer.Option(None, "--guidance", help="classifier-free guidance scale "
                                                    "(conditional diffusion, flow and shortcut models; 0..1000)"),
           out: Optional[Path] = typer.Option(None, help="PNG grid path (default RUN/samples/sample.png; with "
                                              "--png/--npz, no grid unless --out is given)"),
           png: Optional[Path] = typer.Option(None, "--png", help="export one PNG per image into this folder "
                                              "(000000.png, ... in bank order; labels.csv for conditional models)"),
           npz: Optional[Path] = typer.Option(None, "--npz", help="export the images to this .npz (uint8 x, "
                                              "labels y for conditional models)"),
           bank: bool = typer.Option(False, "--bank", help="export the run's saved sample bank (samples/bank.npz) "
                                     "instead of drawing new images; needs --png or --npz")):
    """Draw samples from a trained run and save a PNG grid, or export them (--png DIR, --npz FILE). Under
    accelerate launch / torchrun the batches are shared out over the ranks (the images are the same as from one
    process) and rank 0 writes the files. Conditional models draw the given --label, else (for an export) the
    balanced labels 0, 1, ..., K-1, 0, ... of a sample bank."""
    positive(n, "--n")  # checked before the heavy imports
    positive(steps, "--steps", 100_000)
    if not 0 <= seed < 2**63:
        raise GenbenchError(f"--seed {seed}: give an integer in 0..2**63-1")
    positive(batch, "--batch")
    if guidance is not None and not (guidance == guidance and 0 <= guidance <= MAX_GUIDANCE):  # NaN fails ==
        raise GenbenchError(f"--guidance {guidance}: give a number in 0..{MAX_GUIDANCE:g}")
    export = png is not None or npz is not None
    if bank:
        given = [f"--{o}" for o in _DRAW_OPTIONS if _given(ctx, o)] + (["--out"] if out is not None else [])
        combination(not export, "--bank exports the run's sample bank; add --png DIR and/or --npz FILE")
        combination(bool(given), f"--bank exports the saved bank as it is; drop {', '.join(given)} (or drop --bank "
                                 f"to draw new images)")
    from genbench.io import check_writable_dir

    if out is not None:
        if Path(out).is_dir():
            raise GenbenchError(f"--out {out} is a folder; give the path of a .png file")
        check_writable_dir(Path(out).parent, "--out")
    if png is not None:
        from genbench.io import own_folder
        from genbench.sampling.export import MARKER

        check_writable_dir(png, "--png")
        own_folder(png, (MARKER,), "--png")  # before any image is drawn: a folder of other files is refused
    if npz is not None:
        combination(npz.suffix.lower() != ".npz", f"--npz {npz}: give a file name ending in .npz")
        check_writable_dir(npz.parent, "--npz")
    if bank:
        x, y, manifest = _saved_bank(run_dir)
        _export(x, y, png, npz, {"source": str(Path(run_dir).resolve()), "from": "the run's sample bank",
                                 "bank_manifest": manifest})
        typer.echo(f"{len(x)} images of {Path(run_dir) / 'samples' / 'bank.npz'} -> "
                   f"{', '.join(str(p) for p in (png, npz) if p is not None)}")
        return
    import torch

    from genbench.families import drawer, family_of, load_trained, resolve, sampler_info
    from genbench.runtime.distributed import context
    from genbench.sampling.bank import balanced_labels, generate

    dist = context()
    model, ck = load_trained(run_dir)
    settings = dict(ck["config"].get("sampling") or {})  # the run's own settings (its study's `sampling:`)
    if sampler or steps or guidance is not None:
        if not settings and family_of(model).samplers is None:
            raise GenbenchError("--sampler/--steps/--guidance apply to diffusion, flow and shortcut models only")
        if sampler:
            settings["sampler"] = sampler
        if steps:
            settings["steps"] = steps
        if guidance is not None:
            combination(not getattr(model, "num_classes", 0), f"--guidance: {run_dir} holds an unconditional "
                         f"model, which draws without guidance; drop --guidance")
            settings["guidance_scale"] = guidance
    settings = resolve(model, settings)  # validated (one line on a bad sampler or step count)
    y = None
    k = getattr(model, "num_classes", 0)
    if label is not None:
        if not k:
            raise GenbenchError(f"{run_dir} holds an unconditional model; drop --label")
        if not 0 <= label < k:
            raise GenbenchError(f"--label must be in 0..{k - 1}")
        y = torch.full((n,), label, dtype=torch.long)
    elif export and k:
        y = balanced_labels(n, k)  # an export says which label each image was drawn for (labels.csv, y)
    check_memory_sample(n, min(batch or n, n), image_numel(model, ck))
    # fp32, no warm-up: batch 0 draws from `seed` itself, so the default (one batch) is the grid of earlier versions
    x, s1000 = generate(model, n, seed=seed, precision="fp32", batch=batch or n, labels=y, warmup=False,
                        draw=drawer(settings), dist=dist)
    secs = s1000 * n / 1000
    if not dist.main:
        return  # rank 0 writes the files and prints the line
    written = []
    if export:
        info = sampler_info(model, settings or None)
        _export(x, y, png, npz, {"source": str(Path(run_dir).resolve()), "from": "drawn by genbench sample",
                                 "seed": seed, "batch": batch or n, "precision": "fp32", **info,
                                 "sampling": settings or None, "label": label})
        written += [str(p) for p in (png, npz) if p is not None]
    if out is not None or not export:
        written.append(str(_grid(x, out or Path(run_dir) / "samples" / "sample.png")))
    ranks = f" on {dist.world} ranks" if dist.active else ""
    typer.echo(f"{n} images in {secs:.2f} s{ranks} -> {', '.join(written)}")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (not left at its default)."""
    src = ctx.get_parameter_source(name)
    return src is not None and getattr(src, "name", "") not in ("DEFAULT", "DEFAULT_MAP")


def _grid(x, path: Path) -> Path:
    """Save uint8 (N, C, H, W) images as one PNG grid of up to 10 columns at ``path`` (atomically)."""
    import io

    from PIL import Image

    from genbench.io import atomic_write_bytes
    from genbench.report.figures import tile

    n = len(x)
    cols = min(n, 10)
    buf = io.BytesIO()
    Image.fromarray(tile(x.numpy(), -(-n // cols), cols)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def _saved_bank(run_dir: Path):
    """(uint8 (N, C, H, W), int64 (N,) labels or None, manifest) of the run's ``samples/bank.npz``.

    Raises:
        GenbenchError: no bank, a damaged one, or one drawn from another checkpoint than the run's.
    """
    from genbench.io import sha256_file
    from genbench.sampling.bank import load_images

    run_dir = Path(run_dir)
    npz, man, ck = (run_dir / "samples" / "bank.npz", run_dir / "samples" / "manifest.json",
                    run_dir / "checkpoints" / "last.pt")
    if not npz.exists() or not man.exists():
        raise GenbenchError(f"{run_dir} holds no sample bank ({npz}); run `genbench evaluate {run_dir}` first, or "
                            f"drop --bank to draw new images")
    got = load_images(npz, man, {"checkpoint_sha256": sha256_file(ck)} if ck.exists() else {})
    if got is None:
        raise GenbenchError(f"{npz} is damaged or was drawn from another checkpoint than {ck}; run `genbench "
                            f"evaluate {run_dir}` to draw it again, or drop --bank")
    x, y, manifest = got
    return x, (y if len(y) and (y >= 0).all() else None), manifest


def _export(x, y, png: Path | None, npz: Path | None, manifest: dict) -> None:
    from genbench.sampling.export import write_npz, write_png_folder

    if png is not None:
        write_png_folder(png, x, y, manifest=manifest)
    if npz is not None:
        write_npz(npz, x, y)
