"""Data-parallel training (DDP through accelerate, gloo on CPU): two ranks end with identical weights, and equal
a single process trained on the same global batches (tolerance: float summation order only).

Models are chosen so that the comparison with one process is meaningful: dropout 0 (each rank draws its own
dropout masks, so with dropout > 0 a 2-rank run is a different random run than a 1-rank run) and no BatchNorm
(on CPU each rank normalises over its own shard; SyncBatchNorm needs CUDA): the cGAN's generator has no hidden
layer (``g_widths: []``), so no BatchNorm; its label embeddings are trained, which checks they are synced too.
"""

import os
import socket
import time

import pytest
import torch

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
# max |weight(DDP) - weight(1 process)| after training, lr 1e-3: the U-Net's float round-off, amplified by Adam
# on its small gradients, reaches ~1e-5 in 4 steps (5% of one Adam step here); the MLPs stay far below
TOL = {"vae": 1e-5, "cgan": 1e-5, "ddpm": 5e-5}


def _cfg(d: dict) -> ModelConfig:
    return ModelConfig(optimizer={"lr": 1e-3}, seed=7, precision="fp32", dataset="mnist", log_every=2,
                       **{"ema_decay": None, **d})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        loop.train(_cfg(c), data, os.path.join(out_root, c["name"]))
        torch.save(got["model"], os.path.join(out_root, c["name"], f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def _max_diff(a: dict, b: dict, skip: dict | None = None) -> float:
    """Max |a - b| over the tensors of two state dicts, leaving out the elements ``skip[key]`` marks True."""
    assert a.keys() == b.keys()
    out = 0.0
    for k in a:
        diff = (a[k].double() - b[k].double()).abs()
        if skip and k in skip:
            diff = diff[~skip[k]]
        out = max(out, diff.max().item() if diff.numel() else 0.0)
    return out


def _round_off_grads(c: dict, data: Dataset) -> dict[str, torch.Tensor]:
    """Masks of the weights whose gradient is zero in exact arithmetic, so only float round-off (below 1e-4 of
    the largest gradient) at the initial weights on one batch: a bias or a per-channel offset feeding straight
    into a GroupNorm that normalises each channel on its own (the tiny U-Net here has one channel per group),
    the key part of an attention qkv bias (softmax ignores a shift shared by all keys). Adam turns round-off
    into steps of +-lr with a random sign, so these weights depend on summation order and are not comparable
    between one process and DDP; every other weight is."""
    from genbench.data.registry import to_float
    from genbench.families import build_model

    torch.manual_seed(0)
    model, _ = build_model(c["kind"], c["params"])
    model.train()
    loss = model.training_losses(to_float(data.x[:16]), data.y[:16], generator=torch.Generator().manual_seed(0))
    loss["loss"].backward()
    top = max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None)
    return {k: (p.grad.abs() < 1e-4 * top) if p.grad is not None else torch.ones_like(p, dtype=torch.bool)
            for k, p in model.named_parameters()}


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
        train(_cfg(c), Dataset(d["x"][:n], d["y"][:n], 10, "mnist"), tmp_path / "one" / name)
        r0 = torch.load(tmp_path / "ddp" / name / "rank0.pt")
        r1 = torch.load(tmp_path / "ddp" / name / "rank1.pt")
        between_ranks = _max_diff(r0, r1)
        one = load_checkpoint(tmp_path / "one" / name / "checkpoints" / "last.pt")
        two = load_checkpoint(tmp_path / "ddp" / name / "checkpoints" / "last.pt", expect_kind=c["kind"])
        assert _max_diff(two["model"], r0) == 0.0  # rank 0 saved the unwrapped model it trained
        skip = _round_off_grads(c, Dataset(d["x"][:n], d["y"][:n], 10, "mnist")) if name == "ddpm" else {}
        n_skip = sum(int(m.sum()) for m in skip.values())
        assert n_skip < 0.1 * sum(v.numel() for v in one["model"].values()), n_skip
        vs_one = _max_diff(one["model"], two["model"], skip)
        report[name] = (between_ranks, vs_one, n_skip)
        assert between_ranks == 0.0, name
        assert vs_one < TOL[name], (name, vs_one)
        assert (one["step"], one["images_seen"], one["finished"]) == (two["step"], two["images_seen"], True)
        if c.get("ema_decay"):
            assert _max_diff(one["ema"]["model"], two["ema"]["model"], skip) < 1e-5
        h1, h2 = read_jsonl(tmp_path / "one" / name / "history.jsonl"), read_jsonl(tmp_path / "ddp" / name /
                                                                                   "history.jsonl")
        assert [(r["kind"], r["step"]) for r in h1] == [(r["kind"], r["step"]) for r in h2]
        for a, b in zip(h1, h2):  # rank 0 logged the losses of the global batch (mean over ranks)
            for k in a:
                if k not in ("kind", "step", "epoch", "images_seen", "seconds"):
                    assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (name, k)
        assert not list((tmp_path / "ddp" / name).glob(".*.tmp"))
    print(f"DDP {WORLD} ranks ({ddp_seconds:.1f} s): max |w_rank0 - w_rank1|, max |w_ddp - w_1proc|, "
          f"weights skipped =", {k: f"{a:.1e}, {b:.1e}, {m}" for k, (a, b, m) in report.items()})
