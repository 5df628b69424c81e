"""Complete, atomic checkpoints (STYLE.md convention 6).

A checkpoint holds the model, every optimizer, the EMA, epoch, step, images seen, accumulated training
seconds, every RNG state, the resolved config and a format version. It is written to a temporary file and
``os.replace``d, and loaded with ``torch.load(weights_only=True)`` so a file cannot run code.

Format versions: 2 (issue 14) moved a DDPM's sampler settings out of the model: ``config.sampling`` holds
{sampler, steps, guidance_scale, eta}. Format-1 DDPM checkpoints kept ``sampler``, ``sampler_steps`` and
``guidance_scale`` in ``config.model.resolved_params``; :func:`load_checkpoint` moves them into
``config.sampling`` (with the defaults the old DDPM had: ddim, 50 steps, w = 1), so old runs load, sample and
resume unchanged. The weights are the same in both formats.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.errors import GenbenchError
from genbench.io import atomic_torch_save, regular_file

FORMAT_VERSION = 2
_V1_SAMPLER_PARAMS = {"sampler": ("sampler", "ddim"), "sampler_steps": ("steps", 50),
                      "guidance_scale": ("guidance_scale", 1.0)}  # format-1 DDPM param -> (sampling key, default)
_FIELDS = {"model": dict, "optimizers": dict, "rng": dict, "epoch": int, "step": int, "images_seen": int,
           "train_seconds": (int, float)}


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_torch_save(path, {"format_version": FORMAT_VERSION, **state})


def load_checkpoint(path: Path, *, expect_kind: str | None = None) -> dict:
    """Load and check a checkpoint.

    Raises:
        GenbenchError: missing/unreadable file, not a genbench checkpoint, incomplete, newer format version,
            or a different model kind.
    """
    path = Path(path)
    if not path.exists():
        raise GenbenchError(f"no checkpoint at {path}; train first with `genbench train` or `genbench run`")
    regular_file(path, "checkpoint", "point at a run folder whose checkpoints/last.pt genbench wrote")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise GenbenchError(f"cannot read checkpoint {path} ({type(e).__name__}); it is not a genbench "
                            f"checkpoint or is damaged: retrain or restore it") from e
    version = ckpt.get("format_version") if isinstance(ckpt, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise GenbenchError(f"{path} is not a genbench checkpoint (no format_version); point at a run folder's "
                            f"checkpoints/last.pt or retrain")
    if version > FORMAT_VERSION:
        raise GenbenchError(f"{path} has checkpoint format {version}, newer than this genbench "
                            f"({FORMAT_VERSION}); upgrade genbench")
    cfg = ckpt.get("config")
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    kind = model_cfg.get("kind") if isinstance(model_cfg, dict) else None
    bad = [] if isinstance(kind, str) else ["config.model.kind"]
    bad += [k for k, typ in _FIELDS.items()
            if not isinstance(ckpt.get(k), typ) or (typ is int and isinstance(ckpt.get(k), bool))]
    if bad:
        raise GenbenchError(f"{path} is a damaged genbench checkpoint (missing or wrong {', '.join(bad)}); "
                            f"retrain with --overwrite")
    if version < 2:
        _upgrade_v1(ckpt)
    if expect_kind is not None and kind != expect_kind:
        raise GenbenchError(f"{path} holds a {kind!r} model, not {expect_kind!r}; point at the right run "
                            f"folder or use --overwrite to start a new run")
    return ckpt


def _upgrade_v1(ckpt: dict) -> None:
    """Format 1 -> 2 in place: a DDPM's sampler settings move from ``resolved_params`` to ``config.sampling``."""
    cfg = ckpt["config"]
    if cfg["model"]["kind"] == "ddpm" and "sampling" not in cfg:
        params = dict(cfg["model"].get("resolved_params") or {})
        sampling = {new: params.pop(old, default) for old, (new, default) in _V1_SAMPLER_PARAMS.items()}
        sampling["eta"] = 0.0
        if sampling["sampler"] == "ddpm":
            sampling["steps"] = params.get("timesteps", 1000)
        sampling["guidance_scale"] = float(sampling["guidance_scale"])
        cfg["model"] = {**cfg["model"], "resolved_params": params}
        cfg["sampling"] = sampling
    ckpt["format_version"] = FORMAT_VERSION
