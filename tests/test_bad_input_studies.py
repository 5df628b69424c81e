"""Bad study files are named in one line (issue 18): an alias bomb, the issue's examples, the VAE studies' sections
and the split sizes; and the geometry and classes each kind gets from the study. The generated study files are in
test_bad_input_generated.py.
"""

from __future__ import annotations

import copy

import pytest

from bad_input_helpers import STUDIES, _one_line, _run_study_file, _study_text
from genbench.studies.config import MAX_STUDY_NODES

def test_alias_bomb_is_refused_fast(tmp_path):
    """Issue 18 class 2: nested ``&a [*b, *b, ...]`` lines that expand to 10^12 nodes: refused in one line, in
    well under a second, before profiles are resolved."""
    import time

    lines = ["name: bomb", "dataset: mnist", "l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    lines += ["models: {vae: {kind: vae, epochs: 1, optimizer: {lr: 0.001}, params: {hidden: *l11}}}"]
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    code, err, _ = _run_study_file(p, "smoke", tmp_path / "out")
    _one_line(code, err)
    assert f"more than {MAX_STUDY_NODES:,} values" in err[0]
    from genbench.errors import GenbenchError
    from genbench.studies.config import load_study

    t0 = time.perf_counter()  # (the imports above are done: this times the reading and the bound alone)
    with pytest.raises(GenbenchError, match="more than"):
        load_study(p, "smoke")
    assert time.perf_counter() - t0 < 1


@pytest.mark.parametrize("edit,needle", [
    (("top", 0, (("modles",), {})), "gen.yaml.modles: unknown key; did you mean `models`?"),
    (("model", 0, (("learning_rate",), 0.1)), "models.cgan.learning_rate: unknown key"),
    (("model", 0, (("optimizer", "betas"), [1.5, 0.999])), "optimizer.betas: value [1.5, 0.999] is out of range"),
    (("model", 0, (("optimizer", "betas"), 0.5)), "optimizer.betas: expected list, got float"),
    (("top", 0, (("seed",), 2**64)), "gen.yaml.seed: value 18446744073709551616 is out of range"),
    (("model", 1, (("params", "hidden"), -1)), "models.ddpm.params: 'ddpm' takes no parameter(s) 'hidden'"),
    (("model", 4, (("params", "hidden"), -1)), "models.vae.params.hidden: value -1 is out of range"),
    (("model", 4, (("params", "latent_dim"), 0)), "models.vae.params.latent_dim: value 0 is out of range"),
    (("top", 0, (("evaluation", "n_inception"), 4)), "evaluation.n_inception: value 4 is out of range; give an "
                                                     "integer in 10..1,000,000"),
    (("top", 0, (("evaluation", "n_samples"), 10**9)), "evaluation.n_samples: value 1000000000 is out of range"),
    (("model", 4, (("params", "channels"), 3)), "models.vae.params.channels: 3 does not match the images of mnist"),
])
def test_issue_examples_are_named(tmp_path, edit, needle):
    p = tmp_path / "gen.yaml"
    p.write_text(_study_text("mnist_four", [edit]))
    code, err, _ = _run_study_file(p, "smoke", tmp_path / "out")
    _one_line(code, err)
    assert needle in err[0], err[0]


def test_geometry_and_classes_are_filled_once_for_every_kind():
    from genbench.studies.config import load_study

    cifar = load_study("cifar10_vae_dcgan", "smoke")
    vae, dcgan = cifar.models
    assert (vae.params["channels"], vae.params["image_size"]) == (3, 32, 32)[:2] or vae.params["channels"] == 3
    assert vae.params["image_size"] == 32 and dcgan.params["image_shape"] == [3, 32, 32]
    qd = load_study("quickdraw_vae", "smoke")
    assert {m.name: m.params.get("num_classes", 0) for m in qd.models} == {"rnn_vae": 0, "cnn_vae": 0, "cvae": 5}
    assert qd.data["classes"][:2] == ["rabbit", "yoga"] and qd.evaluation.iwae_k == 10 and qd.evaluation.n_eval == 50
    assert qd.experiments["per_class"] == {"model": "cvae", "n_per_class": 10}
    mn = load_study("mnist_four", "smoke")
    assert mn.models[2].params["num_classes"] == 10 and mn.models[0].params["channels"] == 1


@pytest.mark.parametrize("edit,needle", [
    (lambda r: r["experiments"]["per_class"].update(model="cnn_vae"), "per_class: 'cnn_vae' is not class-conditional"),
    (lambda r: r["models"]["cvae"].pop("conditional"), "per_class: 'cvae' is not class-conditional"),
    (lambda r: r["experiments"].update(linear_probe={"model": "nope"}), "linear_probe: no model 'nope'"),
    (lambda r: r["experiments"].update(frozen_latent={"sigma": [1]}), "frozen_latent.sigma: unknown key; did you "
                                                                       "mean `sigmas`?"),
    (lambda r: r["data"].pop("classes"), "models.cvae.conditional: quickdraw has no classes"),
    (lambda r: r["data"].update(classes=["a", "a"]), "data.classes: value ['a', 'a'] is out of range"),
    (lambda r: r["evaluation"].update(iwae_k=0), "evaluation.iwae_k: value 0 is out of range"),
])
def test_vae_study_sections_are_checked(edit, needle):
    """The sections only the VAE studies use today (data, experiments, iwae_k/n_eval, conditional) are part of
    the one schema, checked before any work."""
    from genbench.errors import GenbenchError
    from genbench.studies.config import parse_study

    raw = copy.deepcopy(STUDIES["quickdraw_vae"])
    edit(raw)
    with pytest.raises(GenbenchError) as e:
        parse_study(raw, "smoke", "qd.yaml")
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_huge_holdout_is_named_not_batch_size():
    from genbench.errors import GenbenchError
    from genbench.studies.config import check_split_sizes, load_study

    cfg = load_study("mnist_four", "smoke")
    with pytest.raises(GenbenchError, match=r"mnist_four.yaml.holdout: 60000 held-out images leave 0 of the 60000"):
        check_split_sizes(__import__("dataclasses").replace(cfg, holdout=60000), 0, 60000)
    with pytest.raises(GenbenchError, match=r"models.vae.batch_size: 128 is more than the 100 training images"):
        check_split_sizes(cfg, 100, 0)
    check_split_sizes(cfg, 1024, 5000)
