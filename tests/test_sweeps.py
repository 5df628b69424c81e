"""Diffusion sampler sweeps: the smoke study runs them inside `genbench run`; the CLI reruns them from cached
banks; settings are validated before any sampling."""

import json
import subprocess
import sys

import pytest

from genbench.errors import GenbenchError
from genbench.studies.config import load_study, parse_study
from genbench.studies.sweeps import parse_sweeps


@pytest.mark.slow
def test_smoke_study_writes_sweeps_and_report(smoke_study):
    sw = json.loads((smoke_study / "sweeps.json").read_text())
    st = sw["settings"]
    assert st[0]["is_reference"] and (st[0]["sampler"], st[0]["steps"]) == ("ddim", 10)
    assert {(r["sampler"], r["steps"]) for r in st[1:]} == {("ddim", 2), ("ddim", 5), ("dpm_solver", 2),
                                                             ("dpm_solver", 5)}
    assert all(r["n"] == sw["n"] == 8 for r in st + sw["guidance"])  # one N for every setting
    w = sw["guidance_scale"]
    assert all(r["nfe"] == r["steps"] * (2 if w not in (0, 1) else 1) for r in st)
    assert [r["guidance_scale"] for r in sw["guidance"]] == [0.0, 1.0, 2.0]
    assert [r["nfe"] for r in sw["guidance"]] == [2, 2, 4]  # w=0 and w=1 need one network evaluation per step
    # the chosen setting is within tolerance of the reference and the fastest such setting
    c = sw["chosen"]
    assert c[sw["tolerance_metric"]] <= st[0][sw["tolerance_metric"]] * (1 + sw["tolerance"]) + 1e-9
    ok = [r for r in st if r[sw["tolerance_metric"]] <= sw["limit"]]
    assert c["seconds_per_1000"] == min(r["seconds_per_1000"] for r in ok)
    # the flow model's block: its own samplers and reference (Heun-4), every row names its model
    fl = sw["models"]["flow"]
    assert sw["models"]["ddpm"]["settings"] == st and fl["family"] == "flow"
    ref = fl["settings"][0]
    assert ref["is_reference"] and (ref["sampler"], ref["steps"]) == ("heun", 4)
    assert {(r["sampler"], r["steps"]) for r in fl["settings"][1:]} == {("euler", 2), ("euler", 4), ("heun", 2)}
    assert all(r["model"] == "flow" for r in fl["settings"] + fl["guidance"])
    assert all(r["model"] == "ddpm" for r in st + sw["guidance"])
    assert all(r["nfe"] == r["steps"] * (2 if r["sampler"] == "heun" else 1) * 2 for r in fl["settings"])  # w=1.5
    assert [r["nfe"] for r in fl["guidance"]] == [4, 4, 8]  # heun-2: 4 NFE, x2 under guidance w=2
    html = (smoke_study / "report" / "index.html").read_text()
    assert "sweep_nfe.png" in html and "sweep_guidance.png" in html and "Diffusion sampler sweeps" in html
    assert (smoke_study / "report" / "figures" / "sweep_nfe.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_sweep_command_reuses_cached_banks(smoke_study):
    before = json.loads((smoke_study / "sweeps.json").read_text())
    p = subprocess.run([sys.executable, "-m", "genbench.cli", "sweep", str(smoke_study), "--no-report"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    after = json.loads((smoke_study / "sweeps.json").read_text())
    for a, b in zip(after["settings"], before["settings"]):
        assert a["timing"].startswith("cached")
        # exact: a cached setting's numbers are read back from the cache, not recomputed
        assert a["fd_classifier"] == b["fd_classifier"] and a["seconds_per_1000"] == b["seconds_per_1000"]


def _raw(**sweeps):
    study = load_study("mnist_four", "smoke")
    raw = dict(study.raw)
    raw["sweeps"] = {**raw["sweeps"], **sweeps}
    return parse_study(raw, "smoke", "mnist_four.yaml")


@pytest.mark.parametrize("bad,needle", [
    ({"models": ["vae"]}, "sweeps.models: 'vae' is not a diffusion or flow model"),
    ({"models": ["ddpm", "ddpm"]}, "sweeps.models: expected distinct model names"),
    ({"model": "ddpm"}, "mnist_four.yaml.sweeps: give `models`"),
    ({"reference": {"sampler": "ddpm", "steps": 1000}}, "sweeps.reference: none for flow model 'flow'"),
    ({"samplers": {"ddim": [10]}}, "sweeps.samplers: none for flow model 'flow'"),
    ({"samplers": {"lms": [10]}}, "unknown sampler 'lms'"),
    ({"samplers": {"ddim": [0]}}, "sweeps.samplers.ddim"),
    ({"n": 1}, "sweeps.n"),
    ({"tolerance": -1}, "sweeps.tolerance"),
    ({"tolerance_metric": "is"}, "sweeps.tolerance_metric"),
    ({"reference": {"sampler": "ddpm"}}, "sweeps.reference"),
    ({"guidance_scales": [-1]}, "sweeps.guidance_scales"),
])
def test_bad_sweep_settings_give_one_line_errors(bad, needle):
    with pytest.raises(GenbenchError, match=needle.replace("(", r"\(")) as e:
        parse_sweeps(_raw(**bad))
    assert "\n" not in str(e.value)
