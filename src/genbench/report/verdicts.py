"""The report's words and tables for verdicts (issue 28), from files only: the provisional note of a one-seed run,
the command that would decide, the pairwise table of a several-seed aggregate, and the numerics provenance line.

The outcomes themselves come from :mod:`genbench.metrics.verdict` (Welch's t-test on per-seed values, Holm over the
pairs of one metric, provisional below 3 seeds); this module only renders them.
"""

from __future__ import annotations

from genbench.metrics.verdict import AHEAD, MIN_SEEDS, PROVISIONAL

FID_LOTTERY = ("retraining with another seed moved FID about 3.2x more than resampling did (the \"FID Lottery\" "
               "study, arXiv 2606.20536)")
MACHINES = ("Machines differ too: the same code and seed, run with 2 threads on two machines of the same kind, "
            "gave FIDs differing by 3-6x the reported spread (issue 28; the CPU's instruction set picks the "
            "kernels, see Provenance)")


def study_argument(study: str) -> str:
    """What to give ``genbench run`` for a study named ``study``: the shipped study file's name where one has that
    name (``mnist-four`` -> ``mnist_four``), else a placeholder for the user's own file."""
    from genbench.studies.catalog import shipped

    stem = study.replace("-", "_")
    return stem if stem in shipped() else f"<the study file of {study}>"


def rerun_command(summary: dict, seeds: int = MIN_SEEDS) -> str:
    """The ``genbench run`` command that repeats a one-seed study with ``seeds`` training seeds, from its
    ``metrics.json`` (study name, profile, and the models' equal-compute budget where they had one)."""
    cmd = f"genbench run {study_argument(str(summary.get('study', 'STUDY')))}"
    if summary.get("profile") not in (None, "quick"):
        cmd += f" --profile {summary['profile']}"
    budgets = [((r.get("metrics") or {}).get("efficiency") or {}).get("budget") for r in summary.get("models", [])]
    b = next((b for b in budgets if b), None)
    if b and b.get("kind") and b.get("value") is not None:
        cmd += f" --budget {b['kind']}={b['value']:g}"
    return cmd + f" --seeds {seeds}"


def provisional_note(summary: dict) -> str:
    """The sentence every one-seed report carries: why its rankings are provisional, and the command that decides
    (for sample sets scored with ``genbench score``, which genbench did not train: what would decide instead)."""
    rule = ("ranks a pair of models only where Welch's t-test on the per-seed values rejects equality at 95% after "
            "Holm's correction over the pairs of each metric, and says how many seeds an undecided pair would need")
    trained = [r for r in summary.get("models", []) if r.get("model") != "real" and r.get("kind") != "samples"]
    if trained:
        rests = f"one training seed (seed {summary.get('seed')})"
        decide = f"To decide, run `{rerun_command(summary)}`: its report {rule}."
    else:
        rests = "one sample set per model, from one trained model each"
        decide = (f"To decide, score sample sets of at least {MIN_SEEDS} independently trained models of each kind "
                  f"(one training seed each); the several-seed rule {rule}.")
    return (f"every ranking on this page is provisional: it rests on {rests}. "
            f"The ± spreads are sampling-only: they resample the generated images of one trained model and leave "
            f"out retraining, and {FID_LOTTERY}. {MACHINES}. {decide}")


def outcome_text(p: dict) -> str:
    """A pair's outcome in words: ``A ahead of B``, ``not distinguishable``, or ``provisional`` with the order of
    the means."""
    if p["outcome"] == AHEAD:
        return f"{p['leader']} ahead of {p['trailer']}"
    if p["outcome"] == PROVISIONAL:
        few = min(p["k_a"], p["k_b"])
        return (f"provisional ({few} seed{'s' if few != 1 else ''}"
                + (f"; {p['leader']} better by mean)" if p["leader"] else ")"))
    return "not distinguishable"


def pairs_table(comparisons: list[dict]) -> tuple[list[str], list[list]]:
    """(header, rows) of every pair's outcome over every metric of an aggregate: means, seeds, Welch's p before and
    after Holm's correction, the outcome, and the seeds per model an undecided pair would need."""
    header = ["metric", "model A", "model B", "mean A", "mean B", "K A, B", "Welch p", "p after Holm", "outcome",
              "seeds needed"]
    rows = []
    for c in comparisons:
        arrow = "↓" if c.get("lower_is_better") else "↑" if c.get("lower_is_better") is not None else ""
        for p in c.get("pairs") or []:
            rows.append([c["metric"] + arrow, p["a"], p["b"], f"{p['mean_a']:.4g}", f"{p['mean_b']:.4g}",
                         f"{p['k_a']}, {p['k_b']}", None if p["p"] is None else f"{p['p']:.3g}",
                         None if p["p_holm"] is None else f"{p['p_holm']:.3g}", outcome_text(p), p["seeds_needed"]])
    return header, rows


def numerics_text(prov: dict) -> str | None:
    """One provenance line of what decides the numerics (runtime.provenance.numerics), or None for a run folder
    written before it was recorded."""
    n = prov.get("numerics")
    if not isinstance(n, dict):
        return None
    cpu = n.get("cpu") or {}
    isa = cpu.get("isa")
    flags = ("ISA flags unknown (no /proc/cpuinfo)" if not isinstance(isa, dict) else
             "ISA " + (", ".join(f for f, on in isa.items() if on) or "none of " + ", ".join(isa)) +
             (" (absent: " + ", ".join(f for f, on in isa.items() if not on) + ")"
              if any(not on for on in isa.values()) else ""))
    env = ", ".join(f"{k}={v}" for k, v in (n.get("env") or {}).items() if v is not None)
    return (f"Numerics: CPU {cpu.get('model')} ({cpu.get('machine')}), {flags}; torch CPU capability "
            f"{n.get('torch_cpu_capability')}, oneDNN {n.get('onednn')}, MKL {n.get('mkl')}, CUDA {n.get('cuda')}; "
            f"{n.get('threads')} intra-op / {n.get('interop_threads')} inter-op threads" + (f" ({env})" if env else "")
            + ". Runs on machines that differ here need not agree bit for bit.")
