"""Figures of the VAE studies (matplotlib, Agg): reconstruction strips, interpolation grids, the latent-scatter
GIF frames of the beta sweep (assembled with matplotlib's PillowWriter), loss curves, per-class bars.
Images come in as uint8 (N, C, H, W); every function writes one file atomically and returns its path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from genbench.io import atomic_write_bytes
from genbench.report.figures import COLORS, image_figure, plt, save, tile


def strip(rows: list[np.ndarray], title: str, path: Path) -> Path:
    """Rows of uint8 (n, C, H, W) images stacked (e.g. originals above reconstructions)."""
    n = max(len(r) for r in rows)
    return image_figure(tile(np.concatenate(rows), len(rows), n), title, path, width=min(1.0 * n, 12))


def latent_frame(z: np.ndarray, labels: np.ndarray, names: dict[int, str], originals: np.ndarray,
                 recons: np.ndarray, title: str) -> np.ndarray:
    """One GIF frame: latent means (N, 2) coloured by class, beside an original / reconstruction strip.
    Returns an RGB uint8 (H, W, 3) image."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4), gridspec_kw={"width_ratios": [1, 1.2]})
    for i, c in enumerate(sorted(set(labels.tolist()))):
        m = labels == c
        a.scatter(z[m, 0], z[m, 1], s=4, alpha=0.6, color=COLORS[i % len(COLORS)], label=names.get(c, str(c)))
    a.set_xlabel("z1 (posterior mean)")
    a.set_ylabel("z2")
    a.legend(fontsize=7, markerscale=3)
    a.set_title(title, fontsize=9)
    b.imshow(tile(np.concatenate([originals, recons]), 2, len(originals)), cmap="gray", vmin=0, vmax=255)
    b.set_title("originals (top) / reconstructions (bottom)", fontsize=9)
    b.axis("off")
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


def gif(frames: list[np.ndarray], path: Path, fps: float = 2.0) -> Path:
    """Frames (RGB uint8, equal sizes) -> an animated GIF written with ``matplotlib.animation.PillowWriter``."""
    from matplotlib.animation import PillowWriter

    h, w = frames[0].shape[:2]
    fig = plt.figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.axis("off")
    im = ax.imshow(frames[0])
    writer = PillowWriter(fps=fps)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "a.gif"
        with writer.saving(fig, str(out), dpi=100):
            for f in frames:
                im.set_data(f)
                writer.grab_frame()
        plt.close(fig)
        return atomic_write_bytes(path, out.read_bytes())


def curves(histories: dict[str, list[dict]], keys: tuple[str, ...], path: Path, title: str) -> Path:
    """Per-epoch training curves of several runs, one panel per key (nats per image)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    for ax, key in zip(np.atleast_1d(axes), keys):
        for i, (name, hist) in enumerate(histories.items()):
            ep = [r for r in hist if r.get("kind") == "epoch" and key in r]
            if ep:
                ax.plot([r["epoch"] for r in ep], [r[key] for r in ep], "-o", ms=3, color=COLORS[i % 6], label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{key} (nats per image)" if key in ("loss", "recon", "kl") else key)
        ax.set_title(key, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def per_class_bars(names: list[str], acc: list[float], conf: list[float], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 1), 3.4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, acc, 0.4, label="accuracy", color=COLORS[0])
    ax.bar(x + 0.2, conf, 0.4, label="mean confidence p(y|x) of the asked class", color=COLORS[1])
    ax.set_xticks(x, names, rotation=30, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def write_png(img: np.ndarray, path: Path) -> Path:
    """RGB uint8 (H, W, 3) -> PNG file (atomic)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()
