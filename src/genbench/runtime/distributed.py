"""Data-parallel training (DDP) through Hugging Face accelerate.

The same ``genbench train`` / ``genbench run`` command trains on one process (CPU or one GPU) or, launched by
``accelerate launch`` or ``torchrun`` (``WORLD_SIZE > 1``), on several processes with
``torch.nn.parallel.DistributedDataParallel``. ``accelerate.PartialState`` reads the launcher's environment,
starts the process group (NCCL on GPUs, gloo on CPU) and pins each process to its GPU.

Rules (also in the README):

- **Global batch.** ``batch_size`` in the study file is the *global* batch. Every rank draws the same seeded
  permutation per epoch and takes its ``1/world`` contiguous slice of each global batch, so ``batch_size``
  must be a multiple of the world size. The number of steps per epoch does not change with the world size.
- **Learning rate is not scaled.** DDP averages the gradients of the ranks' equal shards, which is the gradient
  of the mean loss over the global batch: the same step a single process takes on that batch.
- **Training noise** (VAE eps, DDPM t / noise / label drop, GAN z and fake labels) is drawn for the whole global
  batch on every rank from the same seeded generator and sliced (:class:`genbench.runtime.device.BatchShard`), so a
  sample gets the noise it would get in a single process. Dropout masks come from each rank's own global RNG
  and BatchNorm normalises over the rank's shard (SyncBatchNorm on CUDA), so models with dropout, or with
  BatchNorm on CPU, are not bit-for-bit comparable across world sizes.
- **Only rank 0 writes** (checkpoints, ``history.jsonl``, ``config.yaml``, progress); the others wait at a
  barrier and read the checkpoint rank 0 wrote, so the run folder must be on a filesystem every node sees.
  Checkpoints hold the unwrapped modules' state: single-process and DDP checkpoints are interchangeable.
- **Gradient sync goes through DDP's own hooks**, which only fire for a backward of outputs computed by the DDP
  wrapper's ``forward``. genbench's step functions call model methods (``training_losses``, ``generate``,
  ``discriminate``), so :func:`wrap` puts each called method behind a small module whose ``forward`` is that
  method: the whole model for ``training_losses`` (VAE, DDPM), and the generator (+ its label embedding) and the
  discriminator (+ its label embedding) separately for GANs, matching their two optimizers.

Evaluation is sharded too (issue 6): sample generation (:func:`genbench.sampling.bank.generate`, one seeded
generator per batch), classifier predictions and Inception features split the single-process batches over the
ranks (:meth:`Dist.batch_starts`) and all-gather the results (:meth:`Dist.gather_rows`), so every rank holds
exactly the single-process tensors; rank 0 computes the metrics and writes every file.

With ``WORLD_SIZE`` unset or 1 nothing here is used and training is exactly the single-process code path.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from genbench.runtime.device import get_device
from genbench.errors import GenbenchError


def env_world_size() -> int:
    """The world size a launcher (torchrun / accelerate launch) set, 1 without one."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def env_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``t`` over the ranks (for logged losses and the divergence check, not gradients)."""
        if not self.active:
            return t
        from accelerate.utils import reduce

        return reduce(t, "mean")

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (picklable Python object)."""
        if not self.active:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj if self.main else None]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def gather_object(self, obj) -> list:
        """Every rank's ``obj`` (picklable, small: timings, counts), in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as td

        out = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def batch_starts(self, n: int, batch: int) -> range:
        """Start indices of this rank's batches when ``n`` items are cut into batches of ``batch``.

        The batch boundaries are those of a single process (``0, batch, 2 * batch, ...``); each rank takes
        ``ceil(n_batches / world)`` consecutive batches (the last ranks may get fewer, or none), so
        concatenating the ranks' outputs in rank order (:meth:`gather_rows`) gives the single-process order.
        A single process gets every batch.

        Raises:
            ValueError: ``batch`` < 1.
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if not self.active:
            return range(0, n, batch)
        n_batches = -(-n // batch)
        per = -(-n_batches // self.world) * batch  # items per rank: ceil(n_batches / world) whole batches
        return range(min(n, self.rank * per), min(n, (self.rank + 1) * per), batch)

    def gather_rows(self, x: torch.Tensor | None) -> torch.Tensor:
        """Concatenate the ranks' ``x`` along dim 0 in rank order, on every rank (``x`` itself in one process).

        Args:
            x: (n_r, *S) this rank's rows, on any device; ``S`` and the dtype must be the same on every rank.
                ``None`` for a rank with no rows (at least one rank must have a tensor).

        Returns:
            (sum of n_r, *S), same dtype, on the device of this rank's ``x`` (CPU where it was None). Exact:
            the rows travel as they are (each shard padded to the largest with zeros, then trimmed).
        """
        if not self.active:
            assert x is not None
            return x
        import torch.distributed as td

        meta = self.gather_object(None if x is None else (len(x), tuple(x.shape[1:]), x.dtype))
        shape, dtype = next((m[1], m[2]) for m in meta if m is not None)
        counts = [0 if m is None else m[0] for m in meta]
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")  # NCCL: CUDA, gloo: CPU
        pad = torch.zeros((max(counts), *shape), dtype=dtype, device=comm)
        if x is not None:
            pad[:len(x)] = x.to(comm)
        bufs = [torch.empty_like(pad) for _ in range(self.world)]
        td.all_gather(bufs, pad)
        out = torch.cat([b[:c] for b, c in zip(bufs, counts)])
        return out.to(x.device if x is not None else torch.device("cpu"))


def context() -> Dist:
    """Start (once) or join the process group when launched with ``WORLD_SIZE > 1``; a single-process
    :class:`Dist` on the chosen device otherwise."""
    dev = get_device()
    if env_world_size() <= 1:
        return Dist(device=dev)
    from accelerate import PartialState

    state = PartialState(cpu=dev.type == "cpu")
    if state.num_processes <= 1:
        return Dist(device=dev)
    device = dev if dev.type == "cpu" else state.device
    return Dist(rank=state.process_index, world=state.num_processes, local_rank=state.local_process_index,
                device=device)


class _Call(nn.Module):
    """A module whose ``forward`` is one method of a model; ``modules`` are the sub-modules owning the
    parameters that method trains (what DDP syncs)."""

    def __init__(self, fn, modules: dict[str, nn.Module | None]):
        super().__init__()
        for name, m in modules.items():
            if m is not None:
                self.add_module(name, m)
        self._fn = fn  # a bound method: not registered as a sub-module

    def forward(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class Wrapped:
    """The DDP-wrapped entry points the step functions call instead of the model's own methods."""

    training_losses = generate = discriminate = None

    def __init__(self, dist: Dist, model: nn.Module, entries: dict):
        """``entries``: the family's ``ddp(model)``, ``{entry name: (bound method, {name: sub-module}, parameters
        or None)}``; each entry becomes an attribute, a DDP module whose ``forward`` is the method (parameters,
        when given, must be exactly the sub-modules')."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.dist = dist
        kw = {"device_ids": [dist.device.index]} if dist.device.type == "cuda" else {}
        self._sync_batchnorm(model, dist)
        for name, (fn, modules, params) in entries.items():
            call = _Call(fn, modules)
            if params is not None:
                _check_same(call, params, name)
            setattr(self, name, DDP(call, **kw))

    @staticmethod
    def _sync_batchnorm(model: nn.Module, dist: Dist) -> None:
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if not has_bn:
            return
        if dist.device.type == "cuda":
            # in place: the layers inside the model are swapped, their Parameters (held by the optimizers) kept
            for name, child in list(model.named_children()):
                model.add_module(name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        elif dist.main:  # said once, not once per rank
            warnings.warn("BatchNorm on CPU DDP normalises over each rank's shard (SyncBatchNorm needs CUDA): "
                          "results differ slightly from a single process on the same global batch", stacklevel=4)

    def no_sync_discriminator(self):
        """The generator step backpropagates through D; its D gradients are thrown away, so don't reduce them."""
        return self.discriminate.no_sync() if self.discriminate is not None else contextlib.nullcontext()


def _check_same(module: nn.Module, params, what: str) -> None:
    if {id(p) for p in module.parameters()} != {id(p) for p in params}:
        raise GenbenchError(f"DDP: the {what} sub-modules do not hold exactly the {what}'s optimizer parameters; "
                            f"this model kind cannot be trained with WORLD_SIZE > 1 yet")


def wrap(dist: Dist, model: nn.Module, entries) -> Wrapped | None:
    """DDP wrappers for ``model``'s trained entry points, or None in a single process. ``entries``: the family's
    ``ddp`` callable (called only when data-parallel) or its result (see :class:`Wrapped`)."""
    if not dist.active:
        return None
    return Wrapped(dist, model, entries(model) if callable(entries) else entries)


def shard_size(dist: Dist, batch_size: int) -> int:
    """This rank's share of a global batch.

    Raises:
        GenbenchError: the global batch does not split evenly over the ranks.
    """
    if batch_size % dist.world:
        raise GenbenchError(f"batch_size {batch_size} is the global batch and must be a multiple of the number of "
                            f"processes ({dist.world}); change batch_size in the study file or --num_processes")
    return batch_size // dist.world


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. fetching a dataset into the cache), the other ranks after it; a plain
    block in a single process."""
    if env_world_size() <= 1 or not context().active:
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


def is_main_process() -> bool:
    """False only on data-parallel ranks other than 0 (which train and then leave sampling, evaluation and the
    report to rank 0)."""
    return env_world_size() <= 1 or context().main
