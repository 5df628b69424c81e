"""The sampler- and guidance-sweep table and its sentence, from ``sweeps.json``."""

from __future__ import annotations


def sweep_table(sw: dict) -> tuple[list[str], list[list[str]]]:
    """Rows of the sampler and guidance sweeps (every setting at the same N)."""
    header = ["sampler", "steps", "w", "NFE", f"FID↓ (N={sw['n_inception']})", f"FD-clf↓ (N={sw['n']})",
              "cond. acc↑", "IS↑ (1 split)", "s / 1k", "note"]
    c = sw["chosen"]
    rows = []
    for part, rs in (("", sw["settings"]), ("guidance sweep", sw.get("guidance", []))):
        for r in rs:
            note = "reference" if r.get("is_reference") else ""
            if not part and (r["sampler"], r["steps"]) == (c["sampler"], c["steps"]):
                note = (note + ", " if note else "") + "chosen (fastest within tolerance)"
            rows.append([r["sampler"], str(r["steps"]), f"{r['guidance_scale']:g}", str(r["nfe"]),
                         f"{r['fid_inception']:.2f}", f"{r['fd_classifier']:.2f}", f"{r['conditional_accuracy']:.3f}",
                         f"{r['is']:.2f}", f"{r['seconds_per_1000']:.1f}", part or note])
    return header, rows


def sweep_text(sw: dict) -> str:
    c, ref = sw["chosen"], sw["reference"]
    return (f"{sw['model']}: every setting draws N={sw['n']} images (balanced labels, seed {sw['seed']}, the same "
            f"x_T), FID on the first {sw['n_inception']} of them. Chosen for the efficiency score: "
            f"{c['sampler']}-{c['steps']} ({c['nfe']} NFE, {c['seconds_per_1000']:.1f} s per 1,000 images), the "
            f"fastest setting whose {sw['tolerance_metric']} stays within {sw['tolerance']:.0%} of the "
            f"{ref['sampler']}-{ref['steps']} reference (limit {sw['limit']:.2f}).")
