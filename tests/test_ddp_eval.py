"""Data-parallel evaluation (issue 6; gloo on CPU, 2 ranks): the sharded sample bank, classifier predictions,
Inception features and the metrics computed from them equal a single process's exactly, and only rank 0 writes.

Exact equality holds because the ranks run the single-process batches unchanged (same batch boundaries, so the
same shapes through the same kernels, bf16 autocast included, at one thread each) and gather them in order;
each generation batch has its own seeded generator, so an image does not depend on which rank drew it.
"""

import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import same_metrics, seeded_classifier
from genbench.data.registry import Dataset
from test_ddp import CFGS, _cfg, _free_port

WORLD = 2
N_BANK, BANK_BATCH = 16, 3  # 6 batches: rank 0 gets images 0-8, rank 1 images 9-15 (uneven shards: padding)
N_INCEPTION, INCEPTION_BATCH = 16, 6  # 3 Inception batches (6, 6, 4): 2 on rank 0, 1 on rank 1
N_PREDICT, PREDICT_BATCH = 50, 8  # 7 classifier batches: 4 + 3, the last one short
STUDY = SimpleNamespace(seed=7, evaluation=SimpleNamespace(n_samples=N_BANK, sample_batch=BANK_BATCH))
EVAL = SimpleNamespace(is_splits=2, cas_steps=3, n_memorisation=N_BANK, n_manifold=N_BANK,
                       n_inception=N_INCEPTION, fid_bootstrap=2, resize="tf1_bilinear", inception_precision="bf16")


def _record_writes(writes: list) -> list:
    """Wrap the atomic writers of the evaluation modules so the files each process writes are listed. Returns
    (module, name, original) triples for :func:`_restore` (the one-process run is in the test's own process)."""
    import genbench.metrics.feature_cache as F
    import genbench.sampling.bank as B
    import genbench.studies.runner as R

    saved = []
    for mod, name in ((B, "atomic_savez"), (B, "atomic_write_json"), (F, "atomic_savez"), (F, "atomic_write_json"),
                      (R, "atomic_write_json")):
        real = getattr(mod, name)
        saved.append((mod, name, real))

        def rec(path, *a, _real=real, **k):
            writes.append(str(path))
            return _real(path, *a, **k)

        setattr(mod, name, rec)
    return saved


def _evaluate(root: Path, run: str, cache: str, dist) -> dict:
    """Everything under test, in one process or on one rank: the bank, a sharded predict, evaluate_images."""
    import genbench.metrics.evaluate as E

    saved = [(E, "cache_home", E.cache_home)]
    E.cache_home = lambda: root / cache  # the feature cache (reference statistics...) goes to this test's folder
    writes: list = []
    saved += _record_writes(writes)
    try:
        return _evaluate_patched(root, run, dist, writes)
    finally:  # the one-process run shares the pytest process with every later test
        for mod, name, real in saved:
            setattr(mod, name, real)


def _evaluate_patched(root: Path, run: str, dist, writes: list) -> dict:
    import genbench.metrics.evaluate as E
    from genbench.metrics.classifier import predict
    from genbench.metrics.inception import InceptionFeatures
    from genbench.studies.runner import sample_bank

    d = torch.load(root / "data.pt")
    images, labels, manifest = sample_bank(root / run, STUDY, "fp32", dist)
    clf = seeded_classifier()
    probs, feats = predict(clf, d["test_x"][:N_PREDICT], batch=PREDICT_BATCH, dist=dist)
    test = Dataset(d["test_x"], d["test_y"], 10, "mnist")
    train = Dataset(d["train_x"], d["train_y"], 10, "mnist")
    ctx = E.EvalContext(test=test, train=train, classifier=clf, classifier_info={"test_accuracy": 0.0},
                        eval_cfg=EVAL, seed=3, log=lambda *_: None, dist=dist)
    ctx._inception = InceptionFeatures(resize_policy=EVAL.resize, precision=EVAL.inception_precision,
                                       batch=INCEPTION_BATCH)
    metrics = E.evaluate_images(ctx, images, labels, what="test")
    return {"images": images, "labels": labels, "manifest": manifest, "probs": probs, "feats": feats,
            "metrics": metrics, "writes": writes}


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GENBENCH_DEVICE="cpu", OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from genbench.runtime.distributed import context

    dist = context()
    assert (dist.rank, dist.world) == (rank, WORLD)
    out = _evaluate(Path(root), "run-ddp", "cache-ddp", dist)
    torch.save(out, Path(root) / f"rank{rank}.pt")
    dist.barrier()
    torch.distributed.destroy_process_group()


def test_batch_zero_is_seeded_with_the_seed_and_batches_are_independent():
    from genbench.families import build_model
    from genbench.sampling.bank import batch_generator, generate

    c = next(c for c in CFGS if c["name"] == "cgan")
    torch.manual_seed(0)
    model, _ = build_model(c["kind"], c["params"])
    model.eval()
    y = torch.arange(7) % 10
    whole, _ = generate(model, 7, seed=5, precision="fp32", batch=7, labels=y, warmup=False)
    with torch.inference_mode():  # one batch: what a single generator seeded with the seed draws
        from genbench.data.registry import to_uint8

        assert torch.equal(whole, to_uint8(model.sample(7, y=y, generator=torch.Generator().manual_seed(5))))
        split, _ = generate(model, 7, seed=5, precision="fp32", batch=3, labels=y, warmup=False)
        parts = [to_uint8(model.sample(len(y[i:i + 3]), y=y[i:i + 3], generator=batch_generator(5, i // 3)))
                 for i in range(0, 7, 3)]  # each batch from its own generator, whatever ran before it
    assert torch.equal(split, torch.cat(parts)) and split.shape == (7, 1, 28, 28) and split.dtype == torch.uint8
    assert torch.equal(split[:3], generate(model, 3, seed=5, precision="fp32", batch=3, labels=y[:3],
                                           warmup=False)[0])
    assert len({batch_generator(5, b).initial_seed() for b in range(4)} | {batch_generator(6, 1).initial_seed()}) == 5


@pytest.mark.slow
def test_two_rank_evaluation_equals_one_process(tmp_path, mnist):
    from genbench.runtime.distributed import Dist
    from genbench.training.loop import train

    c = next(c for c in CFGS if c["name"] == "cgan")
    tr, te = mnist["train"], mnist["test"]
    torch.save({"train_x": tr.x[:64].clone(), "train_y": tr.y[:64].clone(), "test_x": te.x[:N_PREDICT].clone(),
                "test_y": te.y[:N_PREDICT].clone()}, tmp_path / "data.pt")
    train(_cfg({**c, "epochs": 1}), Dataset(tr.x[:64], tr.y[:64], 10, "mnist"), tmp_path / "run-ddp")
    shutil.copytree(tmp_path / "run-ddp", tmp_path / "run-one")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    t0 = time.perf_counter()
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ddp_seconds = time.perf_counter() - t0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' thread count: the same kernels, so bit-equal features
    try:
        t0 = time.perf_counter()
        one = _evaluate(tmp_path, "run-one", "cache-one", Dist())
        one_seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD))

    # the bank: every rank holds the single-process images, rank 0 saved them
    for r in (r0, r1):
        assert torch.equal(r["images"], one["images"]) and torch.equal(r["labels"], one["labels"])
    with np.load(tmp_path / "run-ddp" / "samples" / "bank.npz") as z:
        assert np.array_equal(z["images"], one["images"].numpy())
    assert r0["manifest"]["gen_ranks"] == WORLD and one["manifest"]["gen_ranks"] == 1 and r1["manifest"] is None
    assert {k: v for k, v in r0["manifest"].items() if k not in ("gen_ranks", "gen_seconds_per_1000")} == \
           {k: v for k, v in one["manifest"].items() if k not in ("gen_ranks", "gen_seconds_per_1000")}

    # sharded classifier predictions: exact, as each rank computes whole single-process batches (batch_starts) with
    # the one-process run's thread count: the same kernels on the same rows, not just equal in exact arithmetic
    for r in (r0, r1):
        assert np.array_equal(r["probs"], one["probs"]) and np.array_equal(r["feats"], one["feats"])
        assert r["probs"].shape == (N_PREDICT, 10) and r["probs"].dtype == np.float64

    # metrics from the gathered features (Inception included): rank 0's equal one process's, rank 1 gets None
    assert r1["metrics"] is None
    m0, m1 = dict(r0["metrics"]), dict(one["metrics"])
    m0.pop("eval_seconds"), m1.pop("eval_seconds")
    same_metrics(m0, m1)
    # the feature cache (the test split's classifier features, the Inception reference, the memorisation train
    # subset's classifier features): the same keys (the world size is not part of them) and the same arrays
    cached = {w: sorted((tmp_path / f"cache-{w}" / "features").glob("*.npz")) for w in ("ddp", "one")}
    assert [p.name for p in cached["ddp"]] == [p.name for p in cached["one"]] and len(cached["ddp"]) == 3
    for pa, pb in zip(cached["ddp"], cached["one"]):
        with np.load(pa) as a, np.load(pb) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files if k != "__meta__")
    ref = next(p for p in cached["ddp"] if "Inception reference" in json.loads(p.with_suffix(".json").read_text())["what"])
    with np.load(ref) as z:
        assert z["features"].shape == (N_INCEPTION, 2048)

    # only rank 0 wrote: the bank, its manifest, the feature cache's files (npz + sidecar); rank 1 nothing
    assert r1["writes"] == []
    cache_files = [p.name for p in cached["ddp"]] + [p.with_suffix(".json").name for p in cached["ddp"]]
    assert sorted(Path(p).name for p in r0["writes"]) == sorted(["bank.npz", "manifest.json", *cache_files])
    after = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")} - {str(p) for p in before}
    assert sorted(p for p in after if not p.startswith(("run-one", "cache-one"))) == sorted(
        ["cache-ddp", "cache-ddp/features", *[f"cache-ddp/features/{f}" for f in cache_files], "rank0.pt", "rank1.pt",
         "run-ddp/samples", "run-ddp/samples/bank.npz", "run-ddp/samples/manifest.json"])
    assert not list(tmp_path.rglob(".*.tmp"))
    print(f"2-rank evaluation {ddp_seconds:.1f} s (spawn included), one process {one_seconds:.1f} s; "
          f"FID {m0['fid_inception']['value']:.3f} equal")


def test_gather_rows_single_process_is_identity():
    from genbench.runtime.distributed import Dist

    x = torch.arange(6).view(3, 2)
    assert Dist().gather_rows(x) is x and Dist().gather_object(1) == [1]
    assert list(Dist().batch_starts(7, 3)) == [0, 3, 6]
    assert [list(Dist(rank=r, world=3).batch_starts(10, 3)) for r in range(3)] == [[0, 3], [6, 9], []]
