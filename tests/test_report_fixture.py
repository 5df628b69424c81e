"""Old run folders still render (issue 25): a committed study folder of today's metrics.json schema
(tests/fixtures/run_schema2, the BRING_YOUR_OWN tutorial's smoke run: two VAEs, a likelihood model, a model of a
plugin family, a reconstructions experiment; banks cut to 16 images, no checkpoints) is rendered by
`genbench report` from its files alone, and again with the records' ``loss_keys`` removed, as a folder written
before the families were specs has them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run_schema2" / "byo-mnist"


def _render(tmp_path: Path, edit=None) -> str:
    from genbench.report.build import SCHEMA_VERSION, build_report

    d = tmp_path / "byo-mnist"
    shutil.copytree(FIXTURE, d)
    summary = json.loads((d / "metrics.json").read_text())
    assert summary["schema_version"] == SCHEMA_VERSION  # bump the fixture (and keep a reader) with the schema
    if edit is not None:
        edit(summary)
        (d / "metrics.json").write_text(json.dumps(summary))
    page = build_report(d)
    assert page == d / "report" / "index.html" and (d / "report" / "figures" / "training_curves.png").exists()
    return page.read_text()


_SHARED: dict = {}


def shared_render(tmp_path_factory) -> tuple[Path, str, dict]:
    """The committed run folder rendered once per session with every additive edit the report tests below (and
    test_per_class.py, test_memorisation.py) read: the numerics provenance, a study's own extractor (``fd_dino``),
    and per-class and memorisation entries on the real row. Returns (study folder, index.html, the entries added);
    the tests only read it. One render draws ~17 matplotlib figures (~5 s); four tests share it. The unedited
    folder and the one without ``loss_keys`` keep their own renders."""
    if not _SHARED:
        from test_memorisation import _inputs, _mixture
        from test_per_class import _setup

        import numpy as np

        from genbench.metrics.memorisation import memorisation
        from genbench.metrics.per_class import per_class
        from genbench.runtime.provenance import numerics

        rng = np.random.default_rng(3)
        train, test = _mixture(rng, 1000), _mixture(rng, 1000)
        entries = {"per_class": per_class(_setup()), "memorisation": memorisation(_inputs(train[:300], train, test))}

        def edit(summary):
            summary["provenance"]["numerics"] = numerics()
            for i, r in enumerate(summary["models"]):
                r["metrics"]["fd_dino"] = {"value": float(10 - i), "std": 0.1, "space": "dino",
                                           "direction": "lower is better"}
            next(r for r in summary["models"] if r["model"] == "real")["metrics"].update(entries)

        root = tmp_path_factory.mktemp("shared_report")
        html = _render(root, edit)
        _SHARED.update(dir=root / "byo-mnist", html=html, entries=entries)
    return _SHARED["dir"], _SHARED["html"], _SHARED["entries"]


def test_the_committed_run_folder_renders_from_its_files(tmp_path):
    html = _render(tmp_path)
    for name in ("vae", "mlp_vae", "gauss", "moments", "real (floor)"):
        assert name in html, name
    assert "VAE family" in html and "Reconstructions" in html
    assert "Numerics:" not in html  # its provenance predates the numerics fields (issue 28): left out, not an error


def test_records_without_loss_keys_render_through_the_registry(tmp_path):
    """A record without ``loss_keys`` takes its family's from the registry; an unknown family (a plugin not
    installed here) every common loss key: the page still renders, with every row."""
    def drop(summary):
        for r in summary["models"]:
            r.pop("loss_keys", None)

    html = _render(tmp_path, drop)
    assert "moments" in html and "mlp_vae" in html


def test_one_seed_rankings_are_provisional(tmp_path_factory):
    """Issue 28: a one-seed run labels every ranking provisional, says the spread is sampling-only and that machines
    differ, and gives the `--seeds 3` command that would decide; no unqualified "ahead of" anywhere (page and
    summary.md). The fixture's FIDs (mlp_vae 428.7 ± 3.8, gauss 441.7 ± 5.7) were "ahead of ... by more than their
    combined spread" under the old 1-sigma rule. With the numerics provenance recorded, the page shows it (the
    shared render: shared_render)."""
    import html as H
    import re

    d, page, _ = shared_render(tmp_path_factory)
    assert "Numerics: CPU" in page and "torch CPU capability" in page
    md = (d / "report" / "summary.md").read_text()
    for text in (re.sub(r"\s+", " ", H.unescape(re.sub(r"<[^>]+>", "", page))), md):
        assert "every ranking on this page is provisional" in text
        assert "one training seed (seed 42)" in text and "sampling-only" in text
        assert "Machines differ too" in text and "3-6x the reported spread" in text
        assert "genbench run <the study file of byo-mnist> --profile smoke --seeds 3" in text
        assert "Welch's t-test" in text and "Holm" in text
        ahead = [m.start() for m in re.finditer("ahead of", text)]
        assert ahead, "the fixture's FID ranking should still be stated, as provisional"
        assert all(text[i - len("provisionally "):i] == "provisionally " for i in ahead), \
            [text[max(0, i - 60):i + 20] for i in ahead]
        assert "by more than their combined spread" not in text


def test_a_shipped_study_gets_its_file_name_and_budget_in_the_command():
    from genbench.report.verdicts import numerics_text, rerun_command
    from genbench.runtime.provenance import provenance

    s = {"study": "mnist-four", "profile": "quick", "models": [
        {"model": "vae", "metrics": {"efficiency": {"budget": {"kind": "images", "value": 1500}}}}]}
    assert rerun_command(s) == "genbench run mnist_four --budget images=1500 --seeds 3"
    line = numerics_text(provenance())
    assert line.startswith("Numerics: CPU") and "oneDNN" in line and "MKL" in line and "threads" in line


def test_the_extractor_section_ranks_every_feature_space(tmp_path_factory):
    """The fixture's two built-in spaces plus a study's own extractor (an ``fd_<name>`` with its ``space``): three
    columns, three taus. One seed: nothing significant, nothing flagged, and the page says why (the shared render:
    shared_render)."""
    _, text, _ = shared_render(tmp_path_factory)
    i = text.index("<section id='extractors'>")
    sec = text[i:text.index("</section>", i)]
    assert "FID Inception" in sec and "FD classifier" in sec and "Kendall τ" in sec
    assert "4 models one swapped pair moves it by 0.33" in sec and "needs 3 seeds" in sec
    assert "FD dino" in sec and sec.count("<tr>") >= 4 + 1 + 3 + 1 and "flagged" in sec
