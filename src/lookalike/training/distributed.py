"""Multi-process training: what :class:`~lookalike.training.trainer.Trainer` uses with ``world``.

Design: every process draws the same *global* class-balanced batch (same seed, same epoch) and
embeds only its own contiguous share of it (``batch / N`` images). The shares are gathered
(:func:`gather_rows`: the local rows keep their autograd graph, the others are detached copies)
so that the miner and the loss see exactly the single-process global batch. Each process then
back-propagates ``N × loss`` through its own rows; DistributedDataParallel averages the gradients,
so the step equals the single-process step. Batch-norm statistics are synchronised over the
global batch too (:func:`sync_batch_norm`, which also works on CPU with gloo, where
``torch.nn.SyncBatchNorm`` does not). Only rank 0 writes files.
"""

from __future__ import annotations

import os
import socket
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` training processes (``rank`` 0 writes files)."""

    rank: int
    size: int

    def share(self, n: int) -> slice:
        """The rows of a global batch of ``n`` rows that this process embeds (contiguous)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)

    def barrier(self) -> None:
        """Wait for every process."""
        dist.barrier()


def gather_rows(local: torch.Tensor, world: World) -> torch.Tensor:
    """All processes' rows in rank order; only this process's rows carry gradients.

    Args:
        local: (n, D) rows of this process (every process has the same n).

    Returns:
        (size · n, D): the rows of process 0, then 1, ...
    """
    parts = [torch.empty_like(local) for _ in range(world.size)]
    dist.all_gather(parts, local.detach().contiguous())
    parts[world.rank] = local
    return torch.cat(parts)


class _SumAcross(torch.autograd.Function):
    """Sum a tensor over all processes; the gradient is summed back the same way."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def _synced_bn_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Batch norm with the mean and variance of the global batch (all processes' rows)."""
    if not self.training:
        plain: torch.Tensor = nn.modules.batchnorm._BatchNorm.forward(self, x)
        return plain
    dims = [0, *range(2, x.dim())]
    count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
    sums = torch.cat([x.sum(dims), (x * x).sum(dims), count.reshape(1)])
    total: torch.Tensor = _SumAcross.apply(sums)
    c = x.shape[1]
    n = total[2 * c]
    mean = total[:c] / n
    var = (total[c : 2 * c] / n - mean * mean).clamp_min(0.0)
    if self.track_running_stats and self.running_mean is not None:
        assert self.running_var is not None and self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 0.1
        with torch.no_grad():
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            unbiased = var.detach() * n / (n - 1).clamp_min(1.0)
            self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
    shape = [1, c] + [1] * (x.dim() - 2)
    out = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
    if self.affine:
        out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
    return out


def sync_batch_norm(module: nn.Module) -> int:
    """Make every batch-norm layer of ``module`` normalise over the global batch (in place).

    The layers keep their class, parameters and buffers (so checkpoints and saved models are
    unchanged); only their training-mode forward gathers the statistics.

    Returns:
        How many layers were changed.
    """
    changed = 0
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.forward = types.MethodType(_synced_bn_forward, child)  # type: ignore[method-assign]
            changed += 1
    return changed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(
    rank: int, size: int, port: int, backend: str, fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=size)
    try:
        fn(World(rank, size), *args)
    finally:
        dist.destroy_process_group()


def launch(nproc: int, fn: Callable[..., Any], *args: Any, cuda: bool = False) -> None:
    """Run ``fn(world, *args)`` in ``nproc`` new processes (gloo on CPU, NCCL on GPUs).

    Waits for all of them; if one fails (or this process is interrupted), the others are
    ended and the error is raised here (``torch.multiprocessing.ProcessRaisedException``,
    ``KeyboardInterrupt``), so no process is left behind.
    """
    from torch.multiprocessing.spawn import spawn

    backend = "nccl" if cuda else "gloo"
    context = spawn(  # type: ignore[no-untyped-call]
        _entry, args=(nproc, free_port(), backend, fn, args), nprocs=nproc, join=False
    )
    try:
        while not context.join():
            pass
    except BaseException:  # a failed process, or Ctrl-C here: end the others, then re-raise
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        for process in context.processes:
            process.join(10)
        raise
