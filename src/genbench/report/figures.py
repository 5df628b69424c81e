"""Static figures (matplotlib, Agg) from metrics and banks. Each function writes one PNG and returns its path."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genbench.io import atomic_write_bytes  # noqa: E402
from genbench.report.scores import CRITERIA  # noqa: E402

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def tile(images: np.ndarray, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """uint8 (N, C, H, W) -> one uint8 (rows*(H+pad), cols*(W+pad)) grayscale or RGB mosaic."""
    n, c, h, w = images.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(min(n, rows * cols)):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = \
            images[i].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def class_grid(images: np.ndarray, labels: np.ndarray, k: int = 10, per: int = 10) -> np.ndarray:
    """Pick ``per`` images of each label 0..k-1: rows = classes."""
    idx = np.concatenate([np.flatnonzero(labels == c)[:per] for c in range(k)])
    return images[idx]


def image_figure(mosaic: np.ndarray, title: str, path: Path, width: float = 6) -> Path:
    h, w = mosaic.shape[:2]
    fig, ax = plt.subplots(figsize=(width, width * h / w + 0.4))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255)
    if title:
        ax.set_title(title, fontsize=10)
    ax.axis("off")
    return save(fig, path)


def comparison(panels: list[tuple[str, np.ndarray]], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
    for ax, (title, mosaic) in zip(np.atleast_1d(axes), panels):
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    return save(fig, path)


ANY_LOSS_KEYS = ("loss", "recon", "kl", "loss_g", "loss_d")


def curve_keys(record: dict) -> tuple[str, ...]:
    """The history keys a model's training-curve panel draws: its metrics.json record's ``loss_keys`` (written by
    the evaluate stage from the model's Family); for a record written before they were recorded, the registered
    family's; else every common loss key."""
    if record.get("loss_keys"):
        return tuple(record["loss_keys"])
    from genbench.errors import GenbenchError
    from genbench.families import get_family

    try:
        return get_family(record.get("family") or "").loss_keys
    except GenbenchError:
        return ANY_LOSS_KEYS


def training_curves(histories: dict[str, list[dict]], path: Path, families: dict[str, str] | None = None,
                    loss_keys: dict[str, tuple] | None = None) -> Path:
    """One panel per model: the losses its family logs against epochs (``loss_keys[name]``, from
    :func:`curve_keys`: G and D for GANs, with D(x) and D(G(z)) on a second axis; loss, recon and KL for VAEs; the
    denoising loss for diffusion)."""
    names = list(histories)
    families, loss_keys = families or {}, loss_keys or {}
    cols = 2
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps = [r for r in histories[name] if r.get("kind") == "step"]
        if len(steps) < 2:  # very short runs log no steps: plot the per-epoch means
            steps = [r for r in histories[name] if r.get("kind") == "epoch"]
        want = loss_keys.get(name, ANY_LOSS_KEYS)
        keys = [k for k in want if steps and k in steps[0]]
        for i, k in enumerate(keys):
            ax.plot([r["epoch"] for r in steps], [r[k] for r in steps], label=k, color=COLORS[i % len(COLORS)], lw=1)
        if steps and "d_x" in steps[0]:
            ax2 = ax.twinx()
            for i, k in enumerate(("d_x", "d_g_z")):
                ax2.plot([r["epoch"] for r in steps], [r[k] for r in steps], label=k.replace("d_g_z", "D(G(z))")
                         .replace("d_x", "D(x)"), color=COLORS[(i + 3) % len(COLORS)], lw=0.8, ls="--")
            ax2.set_ylim(0, 1)
            ax2.set_ylabel("D probability")
            ax2.legend(fontsize=7, loc="upper right")
        ax.set_title(f"{name} ({families.get(name, '')})" if families.get(name) else name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (nats/image)" if "recon" in keys else "loss")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path)


def bars(names, values, errors, ylabel: str, title: str, path: Path, *, log: bool = False,
         annotate: list[str] | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(names))
    err = [e if e is not None else 0 for e in errors] if errors is not None else None
    ax.bar(x, values, yerr=err, capsize=4, color=[COLORS[i % len(COLORS)] for i in range(len(names))])
    ax.set_xticks(x, names)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    for i, v in enumerate(values):
        ax.annotate(annotate[i] if annotate else f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 3), textcoords="offset points")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def radar(scores: dict[str, dict[str, float]], path: Path) -> Path:
    ang = np.linspace(0, 2 * np.pi, len(CRITERIA), endpoint=False).tolist()
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(111, polar=True)
    for i, (name, s) in enumerate(scores.items()):
        v = [s[c] for c in CRITERIA]
        ax.plot(ang + ang[:1], v + v[:1], color=COLORS[i % len(COLORS)], label=name)
        ax.fill(ang + ang[:1], v + v[:1], color=COLORS[i % len(COLORS)], alpha=0.1)
    ax.set_xticks(ang, CRITERIA)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1))
    return save(fig, path)


def heatmap(scores: dict[str, dict[str, float]], path: Path) -> Path:
    names = list(scores)
    m = np.array([[scores[n][c] for n in names] for c in CRITERIA])
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    im = ax.imshow(m, cmap="RdYlGn", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(CRITERIA)), CRITERIA)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=9)
    fig.colorbar(im, ax=ax)
    return save(fig, path)


def performance_3d(scores: dict[str, dict[str, float]], path: Path) -> Path:
    fig = plt.figure(figsize=(6.5, 5.5))
    ax = fig.add_subplot(111, projection="3d")
    for i, (name, s) in enumerate(scores.items()):
        ax.scatter(s["quality"], s["stability"], s["controllability"], color=COLORS[i % len(COLORS)], s=80, label=name)
        ax.text(s["quality"], s["stability"], s["controllability"], f" {name}", fontsize=8)
    ax.set_xlabel("quality")
    ax.set_ylabel("stability")
    ax.set_zlabel("controllability")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_zlim(0, 1)
    ax.legend(fontsize=8)
    return save(fig, path)


def table(header: list[str], rows: list[list[str]], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(min(2 + 1.35 * len(header), 22), 0.5 + 0.42 * (len(rows) + 1)))
    ax.axis("off")
    t = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    t.scale(1, 1.4)
    ax.set_title(title, fontsize=10)
    return save(fig, path)


def per_class_bars(per_class: dict[str, list[float]], path: Path, class_names: list[str] | None = None) -> Path:
    """Conditional accuracy per requested class, one bar group per class, one colour per model."""
    k = len(next(iter(per_class.values())))
    names = list(class_names or [])[:k] or [str(c) for c in range(k)]
    fig, ax = plt.subplots(figsize=(max(8, 0.8 * k + 2), 3.6))
    w = 0.8 / max(len(per_class), 1)
    for i, (name, v) in enumerate(per_class.items()):
        ax.bar(np.arange(k) + i * w, v, width=w, label=name, color=COLORS[(i + 2) % len(COLORS)])
    ax.set_xticks(np.arange(k) + w * (len(per_class) - 1) / 2, names, rotation=30 if k > 10 or
                  max(map(len, names)) > 3 else 0, fontsize=8)
    ax.set_xlabel("requested class")
    ax.set_ylabel("classifier accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend()
    return save(fig, path)


def precision_recall_scatter(points: dict[str, dict[str, tuple[float, float]]], path: Path) -> Path:
    """points: feature-set name -> model -> (precision, recall)."""
    fig, axes = plt.subplots(1, len(points), figsize=(5.2 * len(points), 4.6), squeeze=False)
    for ax, (feat, pts) in zip(axes.flat, points.items()):
        for i, (name, (p, r)) in enumerate(pts.items()):
            ax.scatter(r, p, s=70, color=COLORS[i % len(COLORS)], label=name, marker="*" if name == "real" else "o")
            ax.annotate(name, (r, p), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("recall (coverage of real data)")
        ax.set_ylabel("precision (fidelity)")
        ax.set_title(f"Precision / recall, k=3, {feat} features", fontsize=10)
        ax.grid(alpha=0.3)
    return save(fig, path)


def per_class(entries: dict[str, dict], path: Path) -> Path:
    """Per-class quality of conditional models (``per_class`` in metrics.json): FD on the classifier's features per
    class (left, log scale) and precision / recall per class (right), one line per set with its bootstrap stds as
    error bars; the real-data row is each class's floor."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (name, e) in enumerate(entries.items()):
        rows = [c for c in e["classes"] if c.get("fd") is not None]
        if not rows:
            continue
        x = np.array([c["class"] for c in rows]) + (i - len(entries) / 2) * 0.06  # side by side, not on top
        c = "black" if name == "real" else COLORS[i % len(COLORS)]
        a1.errorbar(x, [r["fd"] for r in rows], yerr=[r["fd_std"] for r in rows], fmt="o-", ms=3, lw=1,
                    capsize=2, color=c, label=name)
        a2.errorbar(x, [r["precision"] for r in rows], yerr=[r["precision_std"] for r in rows], fmt="o-", ms=3,
                    lw=1, capsize=2, color=c, label=f"{name} precision")
        a2.errorbar(x, [r["recall"] for r in rows], yerr=[r["recall_std"] for r in rows], fmt="s--", ms=3, lw=1,
                    capsize=2, color=c, alpha=0.6, label=f"{name} recall")
    ticks = [c["class"] for c in next(iter(entries.values()))["classes"]]
    labels = [c["name"] for c in next(iter(entries.values()))["classes"]]
    for ax in (a1, a2):
        ax.set_xticks(ticks, labels, rotation=45 if max(map(len, labels), default=0) > 3 else 0, fontsize=8)
        ax.set_xlabel("requested class")
        ax.grid(alpha=0.3)
    a1.set_yscale("log")
    a1.set_ylabel("FD per class (classifier features, lower is better)")
    a2.set_ylabel("precision / recall per class (k = 3)")
    a2.set_ylim(0, 1.02)
    a1.legend(fontsize=7)
    a2.legend(fontsize=6, ncol=2)
    return save(fig, path)


def fid_infinity_fits(fits: dict[str, dict], path: Path) -> Path:
    """FID-infinity (Chong & Forsyth 2020): each set's FID at several N against 1/N, its least-squares line, and
    the intercept at 1/N = 0 (the extrapolated value) as a marker on the y axis."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, f) in enumerate(fits.items()):
        x = 1.0 / np.asarray(f["ns"], float)
        c = COLORS[i % len(COLORS)]
        ax.plot(x, f["fids"], "o", color=c, ms=4, label=f"{name}: FID-inf {f['value']:.1f}")
        xx = np.linspace(0, x.max(), 20)
        ax.plot(xx, f["intercept"] + f["slope"] * xx, "-", color=c, lw=1)
        ax.plot([0], [f["intercept"]], "D", color=c, ms=5)
    ax.set_xlabel("1 / N")
    ax.set_ylabel("FID (Inception)")
    ax.set_xlim(left=0)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save(fig, path)


def sweep_nfe(sw: dict, path: Path) -> Path:
    """Sampler sweep: FID (Inception), FD (classifier) and conditional accuracy vs NFE and vs seconds per 1,000
    images, one line per sampler; the reference setting as a star, the tolerance limit as a dashed line."""
    metrics = [("fid_inception", f"FID (Inception, N={sw['n_inception']})"),
               ("fd_classifier", f"FD (classifier, N={sw['n']})"),
               ("conditional_accuracy", f"conditional accuracy (N={sw['n']})")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    by = {}
    for r in sw["settings"]:
        by.setdefault(r["sampler"], []).append(r)
    for row, xkey, xlabel in ((0, "nfe", "network evaluations per image (NFE, log)"),
                              (1, "seconds_per_1000", "seconds per 1,000 images (log)")):
        for col, (mk, ml) in enumerate(metrics):
            ax = axes[row, col]
            for i, (s, rs) in enumerate(sorted(by.items())):
                rs = sorted(rs, key=lambda r: r[xkey])
                ax.plot([r[xkey] for r in rs], [r[mk] for r in rs], "o-" if len(rs) > 1 else "*",
                        color=COLORS[i % len(COLORS)], label=s, markersize=10 if len(rs) == 1 else 5)
            c = sw["chosen"]
            chosen = next(r for r in sw["settings"] if (r["sampler"], r["steps"]) == (c["sampler"], c["steps"]))
            ax.plot([chosen[xkey]], [chosen[mk]], "s", mfc="none", mec="k", markersize=12, label="chosen")
            if mk == sw["tolerance_metric"]:
                ax.axhline(sw["limit"], ls="--", color="gray", lw=1, label=f"reference +{sw['tolerance']:.0%}")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ml, fontsize=8)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{sw['model']}: quality vs cost, guidance w={sw['guidance_scale']:g}, seed {sw['seed']} "
                 f"(reference {sw['reference']['sampler']}-{sw['reference']['steps']})", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def sweep_guidance(sw: dict, path: Path) -> Path:
    """Guidance sweep: conditional accuracy and FID (Inception) vs classifier-free guidance scale w."""
    rs = sorted(sw["guidance"], key=lambda r: r["guidance_scale"])
    w = [r["guidance_scale"] for r in rs]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(w, [r["conditional_accuracy"] for r in rs], "o-", color=COLORS[0])
    ax.set_xlabel("guidance scale w (0 = unconditional, 1 = conditional without guidance)")
    ax.set_ylabel(f"conditional accuracy (N={sw['n']})", color=COLORS[0])
    ax2 = ax.twinx()
    ax2.plot(w, [r["fid_inception"] for r in rs], "s--", color=COLORS[1])
    ax2.set_ylabel(f"FID (Inception, N={sw['n_inception']})", color=COLORS[1])
    gs = sw["guidance_sampler"]
    ax.set_title(f"{sw['model']}: guidance sweep, {gs['sampler']}-{gs['steps']}, seed {sw['seed']}", fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)
