"""Data-parallel training (DDP through accelerate, gloo on CPU): two ranks end with identical weights, and the
all-reduced gradient of each optimizer's first step equals the one-process gradient on the same global batch
(tolerance: float32 summation order only).

Models are chosen so that the comparison with one process is meaningful: dropout 0 (each rank draws its own
dropout masks, so with dropout > 0 a 2-rank run is a different random run than a 1-rank run) and no BatchNorm
(on CPU each rank normalises over its own shard; SyncBatchNorm needs CUDA): the cGAN's generator has no hidden
layer (``g_widths: []``), so no BatchNorm; its label embeddings are trained, which checks they are synced too.

Why the first step's gradient and not the final weights: the weights after a few Adam steps are equal in exact
arithmetic, but Adam turns float round-off into steps of +-lr on weights whose exact gradient is zero or tiny (a
bias feeding a GroupNorm, an attention key bias): their value depends on the summation order, so a weight
tolerance is a bound on one machine's round-off (5e-5 held on one machine, 1.39e-4 was measured on another of the
same kind). The first step's gradient is taken at the same initial weights on the same global batch in both runs,
so it differs only by the order of float32 sums.
"""

import os
import socket
import time

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from genbench.data.registry import Dataset, batches
from genbench.runtime.device import BatchShard, rand, randint, randn
from genbench.io import read_jsonl
from genbench.studies.config import ModelConfig
from genbench.training.checkpoint import load_checkpoint

WORLD = 2
CFGS = [
    dict(name="vae", kind="vae", params={"latent_dim": 4, "hidden": 32, "encoder": "mlp", "kl_anneal_steps": 4},
         ema_decay=0.9, epochs=2, batch_size=32),
    dict(name="cgan", kind="cgan", params={"z_dim": 8, "g_widths": [], "d_widths": [32], "dropout": 0.0,
                                           "num_classes": 10, "label_dim": 4, "image_shape": [1, 28, 28],
                                           "real_label": 0.9}, epochs=2, batch_size=32),
    dict(name="ddpm", kind="ddpm", params={"widths": [8, 16, 16], "num_classes": 10, "timesteps": 100},
         epochs=1, batch_size=16),
]
N_IMAGES = {"vae": 256, "cgan": 256, "ddpm": 64}
# ||g_ddp - g_1proc|| / ||g_1proc|| for each optimizer's first step. The two differ only in the order of float32
# sums (a mean over 2 shard means, all-reduced, against one mean over the global batch; per-rank GroupNorm and
# conv reductions over fewer images), a relative error of a few float32 unit round-offs (6e-8) per element,
# measured 1e-7..6e-7 in norm. 1e-4 is ~1000x the unit round-off and still far below a real bug, checked by
# breaking the run on purpose: no all-reduce (each rank steps with its own shard's gradient) gave 2.5e-2 for the
# VAE (the ranks also diverge), gradients summed instead of averaged 1.0; an unsynced parameter is O(1) on it.
GRAD_RTOL = 1e-4
# the first logged losses (log_every=1: step 1, at the initial weights, on the same global batch): rank 0 logs the
# mean over ranks of the shard means, the one process the mean over the batch, equal up to float32 sums (~1e-7
# relative); a rank logging its own shard's loss would be off by the batch's sampling noise, O(1e-2) or more
LOSS_RTOL = 1e-5


def _cfg(d: dict) -> ModelConfig:
    return ModelConfig(optimizer={"lr": 1e-3}, seed=7, precision="fp32", dataset="mnist", log_every=1,
                       **{"ema_decay": None, **d})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FirstStepGrads:
    """Records the gradients each optimizer steps with on its first ``step()`` (a global pre-step hook, so it
    sees the optimizers ``train`` builds inside itself): a list, one entry per optimizer in the order of their
    first step (the GAN: "d" then "g"), each the float64 copy of the gradients in ``param_groups`` order (zeros
    for a parameter without a gradient). Use as a context manager; the hook is removed on exit."""

    def __init__(self):
        self.grads: list[list[torch.Tensor]] = []
        self._seen: set[int] = set()

    def _hook(self, opt, args, kwargs):
        if id(opt) in self._seen:
            return
        self._seen.add(id(opt))
        self.grads.append([p.grad.detach().double().clone() if p.grad is not None else torch.zeros_like(p,
                           dtype=torch.float64) for g in opt.param_groups for p in g["params"]])

    def __enter__(self):
        self._handle = register_optimizer_step_pre_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


def _rel_err(ddp: list[torch.Tensor], one: list[torch.Tensor]) -> float:
    """||g_ddp - g_1|| / ||g_1|| over all the parameters of one optimizer."""
    assert [g.shape for g in ddp] == [g.shape for g in one]
    diff = torch.cat([(a - b).flatten() for a, b in zip(ddp, one)]).norm()
    return (diff / torch.cat([b.flatten() for b in one]).norm()).item()


def _worker(rank: int, port: int, data_path: str, out_root: str) -> None:
    """One DDP rank: the environment torchrun / accelerate launch would set, then the ordinary ``train``."""
    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GENBENCH_DEVICE="cpu", OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import genbench.training.loop as loop

    got = {}
    summary = loop._summary

    def keep_weights(model, ck):  # this rank's in-memory weights at the end of train()
        got["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return summary(model, ck)

    loop._summary = keep_weights
    d = torch.load(data_path)
    for c in CFGS:
        n = N_IMAGES[c["name"]]
        data = Dataset(d["x"][:n], d["y"][:n], 10, "mnist")
        with FirstStepGrads() as rec:
            loop.train(_cfg(c), data, os.path.join(out_root, c["name"]))
        torch.save(got["model"], os.path.join(out_root, c["name"], f"rank{rank}.pt"))
        torch.save(rec.grads, os.path.join(out_root, c["name"], f"grads{rank}.pt"))
    torch.distributed.destroy_process_group()


def _max_diff(a: dict, b: dict) -> float:
    """Max |a - b| over the tensors of two state dicts."""
    assert a.keys() == b.keys()
    return max(((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0) for k in a)


def test_batch_shard_draws_the_global_batch_and_slices_it():
    for draw, shape in ((randn, (6, 3)), (rand, (6,)), (lambda s, g, dev: randint(10, s, g, dev), (6,))):
        g = torch.Generator().manual_seed(1)
        whole, after = draw(shape, g, "cpu"), torch.randn(2, generator=g)
        parts = []
        for r in range(3):
            g = torch.Generator().manual_seed(1)
            parts.append(draw((2, *shape[1:]), BatchShard(g, r, 3), "cpu"))
            assert torch.equal(torch.randn(2, generator=g), after)  # the generator advanced as in one process
        assert torch.equal(torch.cat(parts), whole)


def test_batches_shard_splits_each_global_batch():
    x = torch.arange(40, dtype=torch.uint8).view(10, 1, 2, 2)
    ds = Dataset(x, torch.arange(10), 10, "t")
    whole = list(batches(ds, 4, torch.Generator().manual_seed(3)))
    shards = [list(batches(ds, 4, torch.Generator().manual_seed(3), shard=(r, 2))) for r in range(2)]
    assert len(whole) == len(shards[0]) == 2
    for i, (xb, yb) in enumerate(whole):
        assert torch.equal(torch.cat([shards[0][i][0], shards[1][i][0]]), xb)
        assert torch.equal(torch.cat([shards[0][i][1], shards[1][i][1]]), yb)


@pytest.mark.slow
def test_two_rank_ddp_equals_one_process(tmp_path, mnist):
    from genbench.training.loop import train

    d = {"x": mnist["train"].x[:256].clone(), "y": mnist["train"].y[:256].clone()}
    torch.save(d, tmp_path / "data.pt")
    t0 = time.perf_counter()
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(tmp_path / "data.pt"), str(tmp_path / "ddp")),
                                nprocs=WORLD, join=True)
    ddp_seconds = time.perf_counter() - t0
    report = {}
    for c in CFGS:
        name, n = c["name"], N_IMAGES[c["name"]]
        with FirstStepGrads() as rec:
            train(_cfg(c), Dataset(d["x"][:n], d["y"][:n], 10, "mnist"), tmp_path / "one" / name)
        r0 = torch.load(tmp_path / "ddp" / name / "rank0.pt")
        r1 = torch.load(tmp_path / "ddp" / name / "rank1.pt")
        g0 = torch.load(tmp_path / "ddp" / name / "grads0.pt")
        g1 = torch.load(tmp_path / "ddp" / name / "grads1.pt")
        one = load_checkpoint(tmp_path / "one" / name / "checkpoints" / "last.pt")
        two = load_checkpoint(tmp_path / "ddp" / name / "checkpoints" / "last.pt", expect_kind=c["kind"])
        # structural, so exact: the all-reduce hands every rank the same gradient buffer and the ranks then run
        # the same deterministic Adam, so they stay bit-identical; rank 0 saved the unwrapped model it trained
        assert _max_diff(r0, r1) == 0.0, name
        assert all(torch.equal(a, b) for x, y in zip(g0, g1) for a, b in zip(x, y)), name
        assert _max_diff(two["model"], r0) == 0.0, name
        n_opts = 2 if c["kind"] == "cgan" else 1  # the GAN: "d" then "g"
        assert len(rec.grads) == len(g0) == n_opts, (name, len(rec.grads), len(g0))
        errs = [_rel_err(a, b) for a, b in zip(g0, rec.grads)]
        report[name] = errs
        assert max(errs) < GRAD_RTOL, (name, errs)
        assert (one["step"], one["images_seen"], one["finished"]) == (two["step"], two["images_seen"], True)
        h1, h2 = read_jsonl(tmp_path / "one" / name / "history.jsonl"), read_jsonl(tmp_path / "ddp" / name /
                                                                                   "history.jsonl")
        assert [(r["kind"], r["step"]) for r in h1] == [(r["kind"], r["step"]) for r in h2]
        a, b = h1[0], h2[0]  # step 1, at the initial weights: rank 0 logged the global batch's losses
        assert (a["kind"], a["step"]) == ("step", 1)
        losses = [k for k in a if k not in ("kind", "step", "epoch", "images_seen", "seconds")]
        assert losses, a
        for k in losses:
            assert b[k] == pytest.approx(a[k], rel=LOSS_RTOL, abs=1e-7), (name, k, a[k], b[k])
        assert not list((tmp_path / "ddp" / name).glob(".*.tmp"))
    print(f"DDP {WORLD} ranks ({ddp_seconds:.1f} s): first-step ||g_ddp - g_1|| / ||g_1|| per optimizer =",
          {k: [f"{e:.1e}" for e in v] for k, v in report.items()})
