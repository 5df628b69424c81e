"""One optimisation step per objective. Each returns a dict of floats to log.

The families (:mod:`genbench.families`) pick their step here; the loop receives it as an argument.

- ``likelihood`` (VAE, DDPM, flow matching, shortcut models, and outside models of family ``likelihood``): minimise ``model.training_losses(x, y)["loss"]`` with one Adam.
- ``adversarial`` (GAN, cGAN): one discriminator step then one generator step per batch (Goodfellow et al.
  2014, Alg. 1 with k = 1), non-saturating generator loss.

Divergence guard: before each ``optimizer.step()`` the logged losses and the sum of the gradients' L2 norms are
pulled to the host in one ``tolist()`` (the losses were pulled with ``.item()`` every step already, so this
adds no host sync on CPU and at most one per optimizer per step on an accelerator). If any is NaN or inf the
step function raises :class:`NonFiniteStep` *before* that optimizer steps; the loop then restores the last
good state (see :mod:`genbench.training.loop`).
"""

from __future__ import annotations

import contextlib
import math

import torch

from genbench.runtime.device import randint, randn


class NonFiniteStep(Exception):
    """A loss or gradient of this step is NaN or inf; the optimizer named in ``what`` was not stepped.

    Internal signal from a step function to the training loop (not a user error).
    """

    def __init__(self, what: str, values: dict[str, float]):
        super().__init__(f"non-finite {what}: {values}")
        self.what, self.values = what, values


def _checked_values(losses: dict[str, torch.Tensor], opt: torch.optim.Optimizer, what: str,
                    ddp=None) -> dict[str, float]:
    """Host floats of ``losses`` (each a scalar tensor); raises :class:`NonFiniteStep` if one of them, or any
    gradient held by ``opt``'s parameters, is NaN/inf. One host sync.

    Data-parallel (``ddp`` given): the values are averaged over the ranks first (one small all-reduce), so every
    rank logs the global batch's losses and takes the same NaN/inf decision."""
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    vals = [v.detach().float().reshape(()) for v in losses.values()]
    if grads:
        vals.append(torch.stack(torch._foreach_norm(grads)).float().sum())  # NaN/inf iff some grad is
    stacked = torch.stack(vals)
    if ddp is not None:
        stacked = ddp.dist.mean(stacked)
    host = stacked.tolist()
    out = dict(zip(losses, host))
    if not all(math.isfinite(v) for v in host):
        bad = [k for k, v in out.items() if not math.isfinite(v)] or ["gradient"]
        raise NonFiniteStep(f"{what} {'/'.join(bad)}", out)
    return out


def _plugin(model) -> str:
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def check_losses(losses, model, method: str, keys: tuple[str, ...] = ("loss",)) -> None:
    """The contract of a model's loss method (``training_losses``, ``discriminator_losses``,
    ``generator_losses``): a dict holding ``keys``, every value a floating tensor of one element, ``loss`` one that
    gradients flow through. Type and shape checks only: no host sync.

    Raises:
        GenbenchError: one line naming the model class, the method and what it returned.
    """
    from genbench.errors import GenbenchError

    def bad(what: str) -> GenbenchError:
        return GenbenchError(f"model {_plugin(model)}: {method}() {what}; the contract is a dict with "
                             f"{', '.join(map(repr, keys))}, each value a scalar float tensor (the loss with "
                             f"gradients) (see docs/BRING_YOUR_OWN.md)")

    if not isinstance(losses, dict):
        r = " ".join(repr(losses).split())
        raise bad(f"returned {type(losses).__name__} ({r if len(r) <= 40 else r[:37] + '...'}), not a dict")
    missing = [k for k in keys if k not in losses]
    if missing:
        keys_seen = " ".join(repr(list(losses)[:8]).split())[:60]
        raise bad(f"returned a dict without {', '.join(map(repr, missing))} (keys: {keys_seen})")
    for k, v in losses.items():
        if not isinstance(v, torch.Tensor):
            raise bad(f"returned {k!r} as {type(v).__name__}, not a tensor")
        if v.numel() != 1 or v.dim() > 1:
            raise bad(f"returned {k!r} of shape {tuple(v.shape)}, not a scalar (reduce it with .mean())")
        if not v.is_floating_point():
            raise bad(f"returned {k!r} of dtype {v.dtype}, not a floating-point tensor")
    if torch.is_grad_enabled() and not losses["loss"].requires_grad:
        raise bad("returned a 'loss' that no parameter's gradient flows through (detached or computed under "
                  "no_grad)")


def make_optimizers(parts: dict, opt_cfg: dict) -> dict[str, torch.optim.Optimizer]:
    """Adam (Kingma & Ba 2015, Alg. 1) per trained part: ``parts`` maps a name to its parameters (the family's
    ``parts(model)``: ``{"g", "d"}`` for the adversarial family, else ``{"model"}``). ``opt_cfg``: ``lr``, optional ``betas`` (default (0.9, 0.999)) and ``fused`` (default True:
    PyTorch's single-kernel Adam, the same update as the default multi-tensor one up to float round-off;
    measured +17-21% training throughput for the MLP GANs on a 2-core CPU, benchmarks/README.md)."""
    lr, betas = opt_cfg["lr"], tuple(opt_cfg.get("betas", (0.9, 0.999)))
    kw = {"lr": lr, "betas": betas, "fused": bool(opt_cfg.get("fused", True))}
    return {name: torch.optim.Adam(params, **kw) for name, params in parts.items()}


def make_schedulers(opts: dict[str, torch.optim.Optimizer], opt_cfg: dict, total_steps: int) -> dict:
    """Per-step learning-rate schedules: ``schedule: constant`` (default) or ``cosine`` (decay from lr to 0 over
    the run, Loshchilov & Hutter 2017, eq. 5 without restarts)."""
    kind = opt_cfg.get("schedule", "constant")
    if kind == "constant":
        return {}
    if kind == "cosine":
        return {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(total_steps, 1)) for k, o in opts.items()}
    from genbench.errors import GenbenchError

    raise GenbenchError(f"optimizer.schedule: unknown schedule {kind!r}; use 'constant' or 'cosine'")


def likelihood_step(model, opts, x, y, *, generator, autocast, ddp=None) -> dict[str, float]:
    """``ddp``: the DDP wrappers of :mod:`genbench.runtime.distributed` (None in a single process)."""
    opt = opts["model"]
    losses_fn = model.training_losses if ddp is None else ddp.training_losses
    with autocast():
        losses = losses_fn(x, y if model.num_classes else None, generator=generator)
    check_losses(losses, model, "training_losses")
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    logs = _checked_values(losses, opt, "loss", ddp)
    opt.step()
    return logs


def adversarial_step(model, opts, x, y, *, generator, autocast, ddp=None) -> dict[str, float]:
    """``ddp``: the DDP wrappers of :mod:`genbench.runtime.distributed` (None in a single process); G and D are
    then called through them so DDP reduces their gradients."""
    b = x.shape[0]
    y_real = y if model.num_classes else None
    z = randn((b, model.z_dim), generator, x.device)
    y_fake = randint(model.num_classes, (b,), generator, x.device) if model.num_classes else None
    gen = model.generate if ddp is None else ddp.generate
    disc = None if ddp is None else ddp.discriminate
    with autocast():
        fake = gen(z, y_fake)
        d = model.discriminator_losses(x, y_real, fake, y_fake, discriminate=disc)
    check_losses(d, model, "discriminator_losses", ("loss", "d_x", "d_g_z"))
    opts["d"].zero_grad(set_to_none=True)
    d["loss"].backward()
    dv = _checked_values({"loss_d": d["loss"], "d_x": d["d_x"], "d_g_z": d["d_g_z"]}, opts["d"], "discriminator",
                         ddp)
    opts["d"].step()
    with autocast(), (contextlib.nullcontext() if ddp is None else ddp.no_sync_discriminator()):
        g = model.generator_losses(fake, y_fake, discriminate=disc)
    check_losses(g, model, "generator_losses")
    opts["g"].zero_grad(set_to_none=True)
    # gradients of the generator's parameters only: autograd then skips D's weight-gradient matmuls
    g["loss"].backward(inputs=[p for grp in opts["g"].param_groups for p in grp["params"]])
    gv = _checked_values({"loss_g": g["loss"]}, opts["g"], "generator", ddp)
    opts["g"].step()
    return {"loss_d": dv["loss_d"], "loss_g": gv["loss_g"], "d_x": dv["d_x"], "d_g_z": dv["d_g_z"]}


checked_values = _checked_values
"""Public name of the divergence guard, for a model's own ``genbench_step`` (genbench.families.kinds): call it
after ``backward()`` and before ``optimizer.step()``."""
