"""The feature-extractor registry and a user's extractor from a file (issue 28): a tiny conv net built here, saved as
TorchScript (and as ONNX where onnx and onnxruntime are installed), named in a study's evaluation section, scored
with known answers (identical sets: FD ~ 0; a shifted set: larger), its real features cached under a key that
follows the file's bytes; every bad file refused in one line. Kendall's tau and the flagging logic: known answers.

Fast: the nets have a few hundred weights and the images are 12 x 12 (the toy splits of test_feature_cache)."""

from __future__ import annotations

import dataclasses
import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import seeded_classifier
from genbench.errors import GenbenchError
from genbench.metrics import evaluate as E
from genbench.metrics import file_extractor as FX
from genbench.metrics.agreement import agreement, kendall_tau, no_flag_sentence, ranks, tau_sentence
from genbench.metrics.extractors import BUILTINS, extractor_names
from genbench.metrics.file_extractor import FileExtractorConfig, load_file_extractor
from genbench.studies.config import parse_study
from test_feature_cache import M, N, StubInception, _data

HAVE_ONNX = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None


class Tiny(torch.nn.Module):
    """3 x 16 x 16 -> 6 features: conv, ReLU, global average pool, linear."""

    def __init__(self, seed: int = 0, out: str = "ok"):
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.fc, self.out = torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.Linear(8, 6), out

    def forward(self, x):
        f = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        if self.out == "map":
            return f[:, :, None].expand(-1, -1, 2)  # (N, 6, 2): not (N, D)
        if self.out == "nan":
            return f * float("nan")
        if self.out == "int":
            return (f * 100).long()
        if self.out == "tuple":
            return f, f
        return f


def save_ts(path, seed: int = 0, out: str = "ok"):
    net = Tiny(seed, out).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 3, 16, 16), check_trace=False), str(path))
    return path


def cfg(path, **kw) -> FileExtractorConfig:
    return FileExtractorConfig(name="tiny", path=str(path), input_size=16, **kw)


def _ctx(data, ext_cfg, seed: int = 3, logs=None) -> E.EvalContext:
    ev = SimpleNamespace(is_splits=2, cas_steps=2, n_memorisation=10, n_manifold=N, n_inception=M, fid_bootstrap=2,
                         resize="tf1_bilinear", inception_precision="fp32", extractors=(ext_cfg,))
    ctx = E.EvalContext(test=data["test"], train=data["train"], classifier=seeded_classifier(),
                        classifier_info={"test_accuracy": 0.0}, eval_cfg=ev, seed=seed,
                        log=(logs.append if logs is not None else (lambda *_: None)))
    ctx._inception = StubInception()
    return ctx


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# -- the registry and the study section ------------------------------------------------------------------------------
def test_builtins_are_registered_and_built_on_the_context(home):
    assert set(BUILTINS) <= set(extractor_names())
    data = _data()
    ctx = _ctx(data, cfg("unused.pt"))
    ctx.eval_cfg.extractors = ()
    inc, clf = ctx.extractor("inception"), ctx.extractor("classifier")
    x = data["test"].x[:5]
    assert np.array_equal(inc.features(x), StubInception()(x)) and inc.dim == 16
    assert np.array_equal(clf.features(x), E.predict(ctx.classifier, x)[1]) and clf.dim == 128
    assert inc.key() == ctx.extractor_key("inception") and "weights_sha256" in clf.key()


def test_a_study_names_its_extractor_and_records_it_only_then(tmp_path):
    save_ts(tmp_path / "tiny.pt")
    (tmp_path / "study.yaml").write_text("")
    raw = {"name": "s", "dataset": "mnist", "models": {"v": {"kind": "vae", "optimizer": {"lr": 1e-3}, "epochs": 1}}}
    plain = parse_study(raw, "smoke", str(tmp_path / "study.yaml"))
    assert "extractors" not in plain.evaluation.record() and plain.evaluation.record() == {
        k: v for k, v in dataclasses.asdict(plain.evaluation).items() if k != "extractors"}
    ev = {"extractors": [{"name": "tiny", "path": "tiny.pt", "input_size": 16, "range": [-1, 1], "mean": [0.5],
                          "std": [0.25, 0.5, 1], "resize": "torch_bicubic"}]}
    st = parse_study({**raw, "evaluation": ev}, "smoke", str(tmp_path / "study.yaml"))
    (c,) = st.evaluation.extractors
    assert c.path == str(tmp_path / "tiny.pt") and c.value_range == (-1.0, 1.0) and c.std == (0.25, 0.5, 1.0)
    assert st.evaluation.record()["extractors"][0]["name"] == "tiny"
    assert st.raw["evaluation"]["extractors"][0]["path"] == str(tmp_path / "tiny.pt")  # the run folder's study.yaml


@pytest.mark.parametrize("entry, needle", [
    ({"name": "inception", "path": "tiny.pt"}, "not inception or classifier"),
    ({"name": "Tiny!", "path": "tiny.pt"}, "lowercase identifier"),
    ({"name": "tiny", "path": "missing.pt"}, "no extractor file at"),
    ({"name": "tiny", "path": "."}, "not a regular file"),
    ({"name": "tiny", "path": "tiny.bin"}, "cannot tell the format"),
    ({"name": "tiny", "path": "tiny.pt", "range": [1, 0]}, "is empty"),
    ({"name": "tiny", "path": "tiny.pt", "channels": 1, "mean": [0.1, 0.2, 0.3]}, "3 values for 1 channels"),
    ({"name": "tiny", "path": "tiny.pt", "std": [0]}, "positive numbers"),
    ({"name": "tiny", "path": "tiny.pt", "sise": 3}, "unknown key"),
])
def test_bad_study_entries_are_one_line(tmp_path, entry, needle):
    save_ts(tmp_path / "tiny.pt")
    (tmp_path / "tiny.bin").write_bytes(b"x")
    (tmp_path / "study.yaml").write_text("")
    raw = {"name": "s", "dataset": "mnist", "models": {"v": {"kind": "vae", "optimizer": {"lr": 1e-3}, "epochs": 1}},
           "evaluation": {"extractors": [entry]}}
    with pytest.raises(GenbenchError, match=needle) as err:
        parse_study(raw, "smoke", str(tmp_path / "study.yaml"))
    assert "\n" not in str(err.value) and "extractors" in str(err.value)


def test_duplicate_names_are_refused(tmp_path):
    save_ts(tmp_path / "tiny.pt")
    raw = {"name": "s", "dataset": "mnist", "models": {"v": {"kind": "vae", "optimizer": {"lr": 1e-3}, "epochs": 1}},
           "evaluation": {"extractors": [{"name": "tiny", "path": str(tmp_path / "tiny.pt")}] * 2}}
    with pytest.raises(GenbenchError, match="given twice"):
        parse_study(raw, "smoke", "<dict>")


# -- bad files and bad networks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, needle", [
    ("garbage", "not a loadable TorchScript file"),
    ("pickle", "not a loadable TorchScript file"),  # a torch.save'd pickle: refused, never unpickled
    ("map", "returned shape (2, 6, 2)"),
    ("nan", "NaN or infinite"),
    ("int", "torch.int64 features"),
    ("tuple", "not one tensor"),
    ("size", "failed on a batch of shape (2, 3, 2, 2)"),
])
def test_bad_networks_are_refused_in_one_line(tmp_path, case, needle):
    p = tmp_path / "net.pt"
    if case == "garbage":
        p.write_bytes(b"\x00not a zip archive" * 10)
    elif case == "pickle":
        torch.save(Tiny().state_dict(), p)
    else:
        save_ts(p, out=case if case != "size" else "ok")
    c = cfg(p) if case != "size" else dataclasses.replace(cfg(p), input_size=2)
    with pytest.raises(GenbenchError, match=needle.replace("(", r"\(").replace(")", r"\)")) as err:
        load_file_extractor(c, torch.zeros(2, 1, 12, 12, dtype=torch.uint8), device=torch.device("cpu"))
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_onnx_without_onnxruntime_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "net.onnx").write_bytes(b"x")
    monkeypatch.setattr(FX, "_onnxruntime", lambda: None)
    with pytest.raises(GenbenchError, match=r"needs onnxruntime.*genbench\[onnx\]") as err:
        FX.check_file(cfg(tmp_path / "net.onnx"), "evaluation.extractors.tiny")
    assert "\n" not in str(err.value)


# -- known answers ----------------------------------------------------------------------------------------------------
def test_fd_is_zero_for_identical_sets_and_grows_with_a_shift(tmp_path, home):
    """Generated = the reference subset itself: FD ~ 0 in the tiny net's space (and KID ~ 0); the same images
    brightened by 60 grey levels: a clearly larger FD. The metrics carry the space, the extractor and its key."""
    data = _data()
    ctx = _ctx(data, cfg(save_ts(tmp_path / "tiny.pt")))
    same = data["test"].x[torch.as_tensor(ctx.reference_indices(M))]
    out = E.evaluate_images(ctx, same, None, what="same")
    fd, kd = out["fd_tiny"], out["kid_tiny"]
    assert abs(fd["value"]) < 1e-9 and abs(kd["value"]) < 1e-3, (fd["value"], kd["value"])
    assert fd["space"] == "tiny" and fd["n_generated"] == M and fd["std"] is not None
    assert fd["extractor_key"]["file_sha256"] and "tiny" in fd["extractor"]
    shifted = (same.int() + 60).clamp(0, 255).to(torch.uint8)
    far = E.evaluate_images(ctx, shifted, None, what="shifted")["fd_tiny"]["value"]
    other = E.evaluate_images(ctx, data["holdout"].x[:M], None, what="other")["fd_tiny"]["value"]  # same law
    assert far > 10 * other > 0 and far > 1e6 * abs(fd["value"]), (far, other, fd["value"])


def test_real_features_are_cached_under_the_files_bytes(tmp_path, home):
    """The real-data row's tiny features and the reference statistics: computed once, read back by a second
    context with the same numbers; another file (other weights under the same name) computes them again."""
    data = _data()
    path = save_ts(tmp_path / "tiny.pt")
    hold = data["holdout"]

    def row(ctx):
        idx = ctx.heldout_indices(hold, N)
        return E.evaluate_images(ctx, hold.x[torch.as_tensor(idx)], hold.y[torch.as_tensor(idx)], what="real",
                                 source=("holdout", idx))

    def computed(ctx):
        return {e["features"] for e in ctx.feature_cache.record()["lookups"] if not e["from_cache"]}

    ctx1 = _ctx(data, cfg(path))
    first = row(ctx1)
    mine = {f"tiny reference statistics of {M} test images", f"tiny features of {M} holdout images"}
    assert mine <= computed(ctx1)
    ctx2 = _ctx(data, cfg(path))
    second = row(ctx2)
    assert computed(ctx2) == set() and second["fd_tiny"]["value"] == first["fd_tiny"]["value"]
    save_ts(path, seed=1)  # new bytes at the same path
    ctx3 = _ctx(data, cfg(path))
    row(ctx3)
    assert computed(ctx3) == mine


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx (export) or onnxruntime (`pip install 'genbench[onnx]'`) missing")
def test_onnx_gives_the_torchscript_features(tmp_path):
    import warnings

    net = Tiny().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 3, 16, 16),), str(tmp_path / "tiny.onnx"), dynamo=False,
                          input_names=["x"], output_names=["f"], dynamic_axes={"x": {0: "n"}, "f": {0: "n"}})
    images = _data()["test"].x[:7]
    ts = load_file_extractor(cfg(save_ts(tmp_path / "tiny.pt")), images[:2], device=torch.device("cpu"))
    ox = load_file_extractor(cfg(tmp_path / "tiny.onnx"), images[:2])
    a, b = ts.features(images), ox.features(images)
    assert b.shape == (7, 6) and b.dtype == np.float64 and np.allclose(a, b, atol=1e-5)
    assert ox.key()["format"] == "onnx" and ox.key()["runtime"].startswith("onnxruntime")
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(GenbenchError, match="not a loadable ONNX file"):
        load_file_extractor(cfg(tmp_path / "bad.onnx"), images[:2])


# -- agreement: Kendall's tau and the flags ----------------------------------------------------------------------------
def test_kendall_tau_known_answers():
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert kendall_tau(a, a) == pytest.approx(1.0)
    assert kendall_tau(a, a[::-1]) == pytest.approx(-1.0)
    assert kendall_tau(a, [1.0, 3.0, 2.0, 4.0, 5.0]) == pytest.approx(0.8)  # one swap of 5: (9 - 1) / 10
    assert kendall_tau([1.0], [2.0]) is None and kendall_tau(a, [1.0] * 5) is None
    assert ranks({"a": 3.0, "b": 1.0, "c": 3.0, "d": 9.0}) == {"b": 1, "a": 2, "c": 2, "d": 4}
    assert "0.2" in tau_sentence(5) and "0.13" in tau_sentence(6)


def test_flags_on_hand_made_seeds():
    """Three seeds each. Under Inception a is clearly ahead of b (tight, far apart); under DINO the means are in the
    opposite order (b better, overlapping): flagged, the reversal not significant. c keeps its place everywhere."""
    inc = {"a": [10.0, 10.1, 9.9], "b": [20.0, 20.2, 19.8], "c": [30.0, 30.1, 29.9]}
    dino = {"a": [5.0, 7.0, 6.0], "b": [5.5, 4.5, 6.2], "c": [40.0, 41.0, 39.0]}
    res = agreement({"Inception": inc, "DINO": dino})
    flagged = [(f["leader"], f["trailer"], f["significant_in"], f["reversed_in"]) for f in res["flags"]]
    assert flagged == [("a", "b", "Inception", "DINO")] and not res["flags"][0]["reversal_significant"]
    assert res["ranks"]["DINO"] == {"b": 1, "a": 2, "c": 3} and res["taus"][0]["tau"] == pytest.approx(1 / 3)
    # both spaces significant in opposite orders: flagged both ways, each reversal significant
    both = agreement({"Inception": inc, "DINO": {"a": [20.0, 20.1, 19.9], "b": [10.0, 10.2, 9.8],
                                                "c": [30.0, 30.1, 29.9]}})
    assert {(f["significant_in"], f["leader"]) for f in both["flags"]} == {("Inception", "a"), ("DINO", "b")}
    assert all(f["reversal_significant"] for f in both["flags"])
    # one seed: nothing is significant, nothing flagged, and the sentence says why
    one = agreement({"Inception": {m: v[:1] for m, v in inc.items()}, "DINO": {m: v[:1] for m, v in dino.items()}})
    assert one["flags"] == [] and one["k"] == 1 and "needs 3 seeds" in no_flag_sentence(one)
    # identical orderings: tau 1, no flags although pairs are significant
    same = agreement({"Inception": inc, "FD classifier": {m: [2 * v for v in xs] for m, xs in inc.items()}})
    assert same["taus"][0]["tau"] == pytest.approx(1.0) and same["flags"] == [] and same["significant"] > 0


def test_the_aggregate_carries_each_space_per_seed_and_flags_from_it():
    """Several seeds: trials.agg_metrics adds fd_<name> / kid_<name> of the study's extractor; the aggregate page's
    section reads the per-seed values back and flags a pair significant under one space and reversed under another."""
    from genbench.report.extractors import from_aggregate, render
    from genbench.studies.trials import AGG_METRICS, agg_metrics

    summary = {"models": [{"model": "real", "metrics": {"fd_dino": {"value": 1.0, "space": "dino"},
                                                        "kid_dino": {"value": 0.0, "space": "dino"},
                                                        "fd_classifier": {"value": 0.1}}}]}
    assert agg_metrics(summary) == AGG_METRICS + (("fd_dino", "value", True), ("kid_dino", "value", True))
    per = lambda xs: {"per_seed": {str(i): v for i, v in enumerate(xs)}}  # noqa: E731
    agg = {"models": {
        "a": {"metrics": {"fid_inception.value": per([10.0, 10.1, 9.9]), "fd_dino.value": per([5.0, 7.0, 6.0])}},
        "b": {"metrics": {"fid_inception.value": per([20.0, 20.2, 19.8]), "fd_dino.value": per([5.5, 4.5, 6.2])}},
        "real": {"metrics": {"fid_inception.value": per([1.0, 1.0, 1.0]), "fd_dino.value": per([0.1, 0.1, 0.1])}}}}
    spaces = from_aggregate(agg)
    assert list(spaces) == ["FID Inception", "FD dino"] and set(spaces["FD dino"]) == {"a", "b"}
    html = "".join(render(spaces))
    assert "a is significantly ahead of b under FID Inception" in html and "behind it under FD dino" in html
