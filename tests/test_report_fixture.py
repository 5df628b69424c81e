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


def test_the_committed_run_folder_renders_from_its_files(tmp_path):
    html = _render(tmp_path)
    for name in ("vae", "mlp_vae", "gauss", "moments", "real (floor)"):
        assert name in html, name
    assert "VAE family" in html and "Reconstructions" in html


def test_records_without_loss_keys_render_through_the_registry(tmp_path):
    """A record without ``loss_keys`` takes its family's from the registry; an unknown family (a plugin not
    installed here) every common loss key: the page still renders, with every row."""
    def drop(summary):
        for r in summary["models"]:
            r.pop("loss_keys", None)

    html = _render(tmp_path, drop)
    assert "moments" in html and "mlp_vae" in html
