"""genbench's FID and KID against torch-fidelity 0.4.0 and clean-fid 0.1.35 (``legacy_tensorflow``), layer by layer
(issue 28), on the same MNIST images and the same Inception weights, fp32.

Neither reference imports here (both import torchvision at top level, and torchvision does not import beside this
torch), so their module files are read out of their wheels in .cache/wheels (``make setup`` downloads them with
``pip download --no-deps``) and executed alone, with the package's torchvision-bound siblings stubbed:

- torch-fidelity: ``metric_fid`` (``fid_features_to_statistics``, ``fid_statistics_to_metric``), ``metric_kid``
  (``kid_features_to_metric``, its subsets drawn by ``np.random.RandomState(rng_seed)``), and its whole feature
  extractor ``feature_extractor_inceptionv3`` (its TF1 resize, (x - 128) / 128 and its own Inception graph), loaded
  with genbench's weights renamed into its layout (:func:`torch_fidelity_state_dict`).
- clean-fid: ``fid.frechet_distance`` (scipy ``sqrtm``), ``fid.kernel_distance`` (subsets from the global
  ``np.random``) and ``inception_torchscript.InceptionV3W`` with ``resize_inside=True``, which is what
  ``legacy_tensorflow`` builds. InceptionV3W wraps NVIDIA's TorchScript ``inception-2015-12-05.pt``, which is not
  on PyPI; genbench's asset *is* that file's ``layers`` (the same module names and weights, its resize and head
  stripped), so :class:`NvidiaInception` puts back the resize the NVIDIA file runs before ``layers``
  (``affine_grid`` shifted by 1/W - 1/299, ``grid_sample`` bilinear, border, align_corners=False: TF1's
  ``resize_bilinear``) and clean-fid's own class loads it. Images enter as clean-fid's ``ResizeDataset`` hands
  them over: RGB (grey tiled), torchvision ``ToTensor`` (uint8 / 255 in float32) times 255.

Layers: (1) the same feature arrays through each implementation's FID and KID (identical KID subsets), (2) the same
uint8 images through each feature pipeline, (3) end to end: each pipeline's features through its own statistics.

    PYTHONPATH=src OMP_NUM_THREADS=2 .venv/bin/python benchmarks/agreement.py [--n 1000] [--kid-subset 500]

Prints a table (docs/METRICS.md quotes it). Wall time on the 2-core AVX2 machine at --n 1000: see docs/METRICS.md.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import sys
import tempfile
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

WHEELS = Path(__file__).resolve().parent.parent / ".cache" / "wheels"
TORCH_FIDELITY = "torch_fidelity-0.4.0-py3-none-any.whl"
CLEAN_FID = "clean_fid-0.1.35-py3-none-any.whl"


def wheel(name: str) -> Path | None:
    """The wheel's path in .cache/wheels, or None where ``make setup`` has not downloaded it."""
    p = WHEELS / name
    return p if p.is_file() else None


@contextlib.contextmanager
def _modules(mods: dict[str, types.ModuleType]):
    """Put ``mods`` in sys.modules for the duration (the wheels' ``from pkg.x import y`` resolve against them), then
    restore what was there: nothing of either package stays importable after loading."""
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k in list(mods):  # modules the caller added to ``mods`` meanwhile are removed too
            if saved.get(k) is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = saved[k]


def _exec(zf: zipfile.ZipFile, member: str, name: str, into: types.ModuleType | None = None) -> types.ModuleType:
    mod = into or types.ModuleType(name)
    src = zf.read(member).decode()
    exec(compile(src, member, "exec"), mod.__dict__)  # noqa: S102 - a pinned wheel's own module file
    return mod


def load_torch_fidelity() -> types.SimpleNamespace:
    """torch-fidelity's FID, KID and InceptionV3 modules out of its wheel. Its ``utils`` (torchvision, datasets,
    caching) is replaced by a stub: the functions used here never call it."""
    path = wheel(TORCH_FIDELITY)
    if path is None:
        raise FileNotFoundError(f"{WHEELS / TORCH_FIDELITY} missing: run `make setup`")
    zf = zipfile.ZipFile(path)
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = []
    utils = types.ModuleType("torch_fidelity.utils")
    for fn in ("get_cacheable_input_name", "cache_lookup_one_recompute_on_miss",
               "extract_featuresdict_from_input_id_cached", "create_feature_extractor", "resolve_feature_extractor",
               "resolve_feature_layer_for_metric"):
        setattr(utils, fn, None)
    mods = {"torch_fidelity": pkg, "torch_fidelity.utils": utils}
    out = {}
    with _modules(mods):
        for name in ("defaults", "deprecations", "helpers", "interpolate_compat_tensorflow", "feature_extractor_base",
                     "feature_extractor_inceptionv3", "metric_fid", "metric_kid"):
            full = f"torch_fidelity.{name}"
            mods[full] = sys.modules[full] = types.ModuleType(full)
            _exec(zf, f"torch_fidelity/{name}.py", full, mods[full])
            out[name] = mods[full]
    return types.SimpleNamespace(**out)


def load_clean_fid() -> types.SimpleNamespace:
    """clean-fid's ``frechet_distance``, ``kernel_distance`` and ``fid_from_feats`` (the pure functions of
    ``cleanfid/fid.py``, cut out of the file with ``ast``: its imports pull torchvision) and its
    ``InceptionV3W`` (``cleanfid/inception_torchscript.py``, downloader stubbed)."""
    path = wheel(CLEAN_FID)
    if path is None:
        raise FileNotFoundError(f"{WHEELS / CLEAN_FID} missing: run `make setup`")
    zf = zipfile.ZipFile(path)
    import scipy.linalg

    src = zf.read("cleanfid/fid.py").decode()
    keep = [n for n in ast.parse(src).body
            if isinstance(n, ast.FunctionDef) and n.name in ("frechet_distance", "kernel_distance", "fid_from_feats")]
    fid = types.ModuleType("cleanfid.fid")
    fid.np, fid.linalg = np, scipy.linalg
    exec(compile(ast.Module(body=keep, type_ignores=[]), "cleanfid/fid.py", "exec"), fid.__dict__)  # noqa: S102
    pkg = types.ModuleType("cleanfid")
    pkg.__path__ = []
    dl = types.ModuleType("cleanfid.downloads_helper")
    dl.check_download_inception = lambda fpath: None
    dl.__all__ = ["check_download_inception"]
    with _modules({"cleanfid": pkg, "cleanfid.downloads_helper": dl}):
        ts = _exec(zf, "cleanfid/inception_torchscript.py", "cleanfid.inception_torchscript")
    return types.SimpleNamespace(fid=fid, inception_torchscript=ts)


# --- the feature pipelines -------------------------------------------------------------------------------------------

def _genbench_layers() -> torch.nn.Module:
    from genbench.data.assets import fetch_asset

    return torch.jit.load(str(fetch_asset("inception")), map_location="cpu").eval().net.layers


class NvidiaInception(torch.nn.Module):
    """NVIDIA's ``inception-2015-12-05.pt`` forward for ``return_features=True`` in fp32, around genbench's copy of
    its ``layers``: the TF1-equivalent resize it runs (identity ``affine_grid`` shifted by 1/W - 1/299 and
    1/H - 1/299, ``grid_sample`` bilinear with border padding), then (x - 128) / 128, then ``layers``."""

    def __init__(self, layers: torch.nn.Module):
        super().__init__()
        self.layers = layers

    def resize(self, img: torch.Tensor) -> torch.Tensor:
        """float32 (N, C, H, W) 0..255 -> (N, C, 299, 299): pixel j samples the source at j * H / 299 (TF1)."""
        n, c, h, w = img.shape
        theta = torch.eye(2, 3)
        theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
        grid = F.affine_grid(theta.unsqueeze(0).repeat(n, 1, 1), [n, c, 299, 299], align_corners=False)
        return F.grid_sample(img.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = (self.resize(img) - 128) / 128
        return torch.reshape(self.layers(x), [-1, 2048])


def clean_fid_extractor(cf: types.SimpleNamespace, workdir: Path):
    """clean-fid's ``legacy_tensorflow`` model: its own ``InceptionV3W(resize_inside=True)`` loading a TorchScript
    :class:`NvidiaInception` saved as ``inception-2015-12-05.pt`` in ``workdir``."""
    torch.jit.save(torch.jit.script(NvidiaInception(_genbench_layers())), str(workdir / "inception-2015-12-05.pt"))
    return cf.inception_torchscript.InceptionV3W(str(workdir), download=False, resize_inside=True).eval()


def clean_fid_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """What clean-fid's ``ResizeDataset`` yields for these images in ``legacy_tensorflow`` mode: PIL
    ``convert('RGB')`` (grey tiled), no resize outside the network, ``ToTensor()`` (uint8 -> float32 / 255) * 255."""
    x = x_uint8.repeat(1, 3, 1, 1) if x_uint8.shape[1] == 1 else x_uint8
    return x.to(torch.float32).div(255) * 255


# torch-fidelity's block layout against the NVIDIA/TF names of each block's convolutions, in torch-fidelity's order.
_A = [("branch1x1", "conv"), ("branch5x5_1", "tower.conv"), ("branch5x5_2", "tower.conv_1"),
      ("branch3x3dbl_1", "tower_1.conv"), ("branch3x3dbl_2", "tower_1.conv_1"), ("branch3x3dbl_3", "tower_1.conv_2"),
      ("branch_pool", "tower_2.conv")]
_B = [("branch3x3", "conv"), ("branch3x3dbl_1", "tower.conv"), ("branch3x3dbl_2", "tower.conv_1"),
      ("branch3x3dbl_3", "tower.conv_2")]
_C = [("branch1x1", "conv"), ("branch7x7_1", "tower.conv"), ("branch7x7_2", "tower.conv_1"),
      ("branch7x7_3", "tower.conv_2"), ("branch7x7dbl_1", "tower_1.conv"), ("branch7x7dbl_2", "tower_1.conv_1"),
      ("branch7x7dbl_3", "tower_1.conv_2"), ("branch7x7dbl_4", "tower_1.conv_3"), ("branch7x7dbl_5", "tower_1.conv_4"),
      ("branch_pool", "tower_2.conv")]
_D = [("branch3x3_1", "tower.conv"), ("branch3x3_2", "tower.conv_1"), ("branch7x7x3_1", "tower_1.conv"),
      ("branch7x7x3_2", "tower_1.conv_1"), ("branch7x7x3_3", "tower_1.conv_2"), ("branch7x7x3_4", "tower_1.conv_3")]
_E = [("branch1x1", "conv"), ("branch3x3_1", "tower_conv"), ("branch3x3_2a", "tower_mixed_conv"),
      ("branch3x3_2b", "tower_mixed_conv_1"), ("branch3x3dbl_1", "tower_1_conv"), ("branch3x3dbl_2", "tower_1_conv_1"),
      ("branch3x3dbl_3a", "tower_1_mixed_conv"), ("branch3x3dbl_3b", "tower_1_mixed_conv_1"),
      ("branch_pool", "tower_2_conv")]
_LAYOUT = ([("Conv2d_1a_3x3", "conv"), ("Conv2d_2a_3x3", "conv_1"), ("Conv2d_2b_3x3", "conv_2"),
            ("Conv2d_3b_1x1", "conv_3"), ("Conv2d_4a_3x3", "conv_4")]
           + [(f"{tf}.{a}", f"{nv}.{b}") for tf, nv, block in
              [("Mixed_5b", "mixed", _A), ("Mixed_5c", "mixed_1", _A), ("Mixed_5d", "mixed_2", _A),
               ("Mixed_6a", "mixed_3", _B), ("Mixed_6b", "mixed_4", _C), ("Mixed_6c", "mixed_5", _C),
               ("Mixed_6d", "mixed_6", _C), ("Mixed_6e", "mixed_7", _C), ("Mixed_7a", "mixed_8", _D),
               ("Mixed_7b", "mixed_9", _E), ("Mixed_7c", "mixed_10", _E)] for a, b in block])


def torch_fidelity_state_dict() -> dict:
    """genbench's Inception weights (NVIDIA/TF names, batch norm without a scale) in torch-fidelity's layout: each
    conv's weight, and its BatchNorm2d's bias = beta, running mean / var, weight = 1 (the TF graph has no gamma).
    The fc layer (1008 logits) is absent from genbench's asset: zeros (pool3 features do not use it). Every genbench
    tensor is used exactly once (checked here); torch-fidelity's strict ``load_state_dict`` checks the other side
    (every key filled, every shape equal)."""
    src = {k: v for k, v in _genbench_layers().state_dict().items()}
    sd, used = {}, []
    for tf, nv in _LAYOUT:
        w = src[f"{nv}.weight"]
        sd[f"{tf}.conv.weight"] = w
        sd[f"{tf}.bn.weight"] = torch.ones(w.shape[0])
        sd[f"{tf}.bn.bias"] = src[f"{nv}.beta"]
        sd[f"{tf}.bn.running_mean"] = src[f"{nv}.mean"]
        sd[f"{tf}.bn.running_var"] = src[f"{nv}.var"]
        sd[f"{tf}.bn.num_batches_tracked"] = torch.tensor(0)
        used += [f"{nv}.{p}" for p in ("weight", "beta", "mean", "var")]
    if sorted(used) != sorted(src):
        raise AssertionError(f"genbench tensors unmapped or mapped twice: {sorted(set(src) ^ set(used))[:5]}")
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    return sd


def torch_fidelity_extractor(tfid: types.SimpleNamespace, workdir: Path):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (pool3 '2048', fp32) holding genbench's weights."""
    path = workdir / "weights-inception-2015-12-05-genbench.pth"
    torch.save(torch_fidelity_state_dict(), path)
    cls = tfid.feature_extractor_inceptionv3.FeatureExtractorInceptionV3
    return cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)).eval()


@torch.no_grad()
def features(extract, x_uint8: torch.Tensor, batch: int = 50) -> np.ndarray:
    """float32 (N, 2048) of ``extract(batch)`` over ``x_uint8`` in batches of ``batch`` (genbench's batch)."""
    return np.concatenate([np.asarray(extract(x_uint8[i:i + batch]), np.float32) for i in range(0, len(x_uint8), batch)])


def torch_fidelity_kid_subsets(n1: int, n2: int, subsets: int, size: int, seed: int) -> list:
    """The (features_1, features_2) index pairs ``kid_features_to_metric`` draws: one RandomState(seed), set 1 then
    set 2 per subset."""
    rng = np.random.RandomState(seed)
    return [(rng.choice(n1, size, replace=False), rng.choice(n2, size, replace=False)) for _ in range(subsets)]


def clean_fid_kid_subsets(n1: int, n2: int, subsets: int, size: int, seed: int) -> list:
    """The (feats1, feats2) index pairs ``kernel_distance`` draws after ``np.random.seed(seed)``: feats2's first."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(subsets):
        i2 = rng.choice(n2, size, replace=False)
        out.append((rng.choice(n1, size, replace=False), i2))
    return out


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="images per set (MNIST test[:n] vs test[n:2n])")
    ap.add_argument("--kid-subsets", type=int, default=100)
    ap.add_argument("--kid-subset", type=int, default=500, help="KID subset size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from genbench.data import load_dataset
    from genbench.metrics.inception import InceptionFeatures
    from genbench.metrics.manifold import kid
    from genbench.metrics.scores import feature_stats, fid_between, frechet_distance

    tfid, cf = load_torch_fidelity(), load_clean_fid()
    x = load_dataset("mnist")["test"].x[:2 * args.n]
    print(f"MNIST test[:{args.n}] vs test[{args.n}:{2 * args.n}], uint8 {tuple(x.shape[1:])}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="genbench-agreement-"))
    pipes = {"genbench": InceptionFeatures(precision="fp32", backend="torch"),
             "torch-fidelity": lambda b, m=torch_fidelity_extractor(tfid, work): m(b.repeat(1, 3, 1, 1))[0],
             "clean-fid": lambda b, m=clean_fid_extractor(cf, work): m(clean_fid_input(b))}
    feats = {}
    for name, fn in pipes.items():
        t0 = time.perf_counter()
        feats[name] = features(fn, x)
        print(f"  features {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    g = feats["genbench"].astype(np.float64)
    s = dict(subsets=args.kid_subsets, size=args.kid_subset, seed=args.seed)

    def ours(f):
        f = f.astype(np.float64)
        a, b = f[:args.n], f[args.n:]
        tf_sub = torch_fidelity_kid_subsets(args.n, args.n, s["subsets"], s["size"], s["seed"])
        cf_sub = clean_fid_kid_subsets(args.n, args.n, s["subsets"], s["size"], s["seed"])
        return (frechet_distance(*feature_stats(a), *feature_stats(b)), fid_between(a, b),
                kid(a, b, subset_indices=tf_sub)[0], kid(a, b, subset_indices=cf_sub)[0])

    def theirs_tf(f):
        a, b = torch.from_numpy(f[:args.n]), torch.from_numpy(f[args.n:])
        fid = tfid.metric_fid.fid_statistics_to_metric(tfid.metric_fid.fid_features_to_statistics(a),
                                                       tfid.metric_fid.fid_features_to_statistics(b), False)
        k = tfid.metric_kid.kid_features_to_metric(a, b, kid_subsets=s["subsets"], kid_subset_size=s["size"],
                                                   rng_seed=s["seed"], verbose=False)
        return fid["frechet_inception_distance"], k["kernel_inception_distance_mean"]

    def theirs_cf(f):
        np.random.seed(s["seed"])
        k = cf.fid.kernel_distance(f[:args.n], f[args.n:], num_subsets=s["subsets"], max_subset_size=s["size"])
        return float(np.real(cf.fid.fid_from_feats(f[:args.n], f[args.n:]))), k

    print("\nlayer 2: the same images through each feature pipeline (float32 pool3, genbench as the reference)")
    for name in ("torch-fidelity", "clean-fid"):
        d = np.abs(feats[name] - feats["genbench"])
        print(f"  {name:15s} max |diff| {d.max():.2e}  max |diff| / max|feature| {d.max() / np.abs(g).max():.2e}  "
              f"mean |diff| / mean |feature| {d.mean() / np.abs(g).mean():.2e}")

    print("\nlayer 1: genbench's features through each implementation's statistics (float32 features as each "
          "reference's pipeline hands them; genbench widens to float64)")
    fid_o, fid_b, kid_tf_o, kid_cf_o = ours(g)
    fid_tf, kid_tf = theirs_tf(feats["genbench"])
    fid_cf, kid_cf = theirs_cf(feats["genbench"])
    rows = [("FID", "torch-fidelity", fid_o, fid_tf), ("FID", "clean-fid", fid_o, fid_cf),
            ("FID (fid_between)", "torch-fidelity", fid_b, fid_tf),
            ("KID", "torch-fidelity", kid_tf_o, kid_tf), ("KID", "clean-fid", kid_cf_o, kid_cf)]
    print(f"  {'metric':18s} {'reference':15s} {'genbench':>12s} {'reference':>12s} {'rel. diff':>9s}")
    for m, r, a, b in rows:
        print(f"  {m:18s} {r:15s} {a:12.6g} {b:12.6g} {rel(a, b):9.1e}")

    print("\nlayer 3: end to end, each pipeline's own features through its own statistics")
    fid_tf3, kid_tf3 = theirs_tf(feats["torch-fidelity"])
    fid_cf3, kid_cf3 = theirs_cf(feats["clean-fid"])
    print(f"  {'metric':6s} {'reference':15s} {'genbench':>12s} {'reference':>12s} {'rel. diff':>9s}")
    for m, r, a, b in [("FID", "torch-fidelity", fid_o, fid_tf3), ("FID", "clean-fid", fid_o, fid_cf3),
                       ("KID", "torch-fidelity", kid_tf_o, kid_tf3), ("KID", "clean-fid", kid_cf_o, kid_cf3)]:
        print(f"  {m:6s} {r:15s} {a:12.6g} {b:12.6g} {rel(a, b):9.1e}")
    print(f"\n(N = {args.n} per set, KID {s['subsets']} subsets of {s['size']}, seed {s['seed']}; FID at N < 2048 has "
          "singular covariances: see docs/METRICS.md)")


if __name__ == "__main__":
    main()
