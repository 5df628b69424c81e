"""Seconds and peak memory per stage (issue 26, :mod:`genbench.runtime.memory`)."""

from __future__ import annotations

import numpy as np

from genbench.runtime.memory import MIB, peak_rss_bytes, reset_peak, stage


def test_a_stage_records_its_own_peak():
    """A stage that holds 200 MiB has a peak at least that much above one that holds nothing, and (where the
    kernel resets the high-water mark) the later small stage does not inherit the big one's peak."""
    rec: dict = {}
    base = peak_rss_bytes()
    assert base is not None and base > 0
    with stage("big", rec):
        a = np.ones(200 * MIB // 8)  # 200 MiB touched
        a.sum()
    del a
    with stage("small", rec):
        np.ones(10).sum()
    assert set(rec) == {"big", "small"} and all(v["seconds"] >= 0 for v in rec.values())
    if rec["small"]["peak_scope"] == "stage":  # Linux >= 4.0: /proc/self/clear_refs resets VmHWM
        assert rec["big"]["peak_rss_mib"] - rec["small"]["peak_rss_mib"] > 150
    else:  # elsewhere: the process's peak, said so
        assert rec["small"]["peak_rss_mib"] >= rec["big"]["peak_rss_mib"]
    assert reset_peak() in (True, False)
