"""Ray Train as the launcher of multi-process training (``lookalike train --nproc N --ray``).

The same training as :func:`~lookalike.training.distributed.launch`, started by
``ray.train.torch.TorchTrainer`` instead of ``torch.multiprocessing``: Ray places ``N`` workers
(one CPU each, or one GPU each), initialises ``torch.distributed`` in them (gloo on CPUs, NCCL
on GPUs) and sets each worker's CUDA device; each worker then runs ``fn(world, *args)`` with
its rank mapped into a :class:`~lookalike.training.distributed.World`, so that the training
code (the shared global batch, :func:`~lookalike.training.distributed.gather_rows`, the synced
batch norm, rank 0 alone writing the model folder and its checkpoint) is unchanged.

Our own checkpoint (``OUT/training/checkpoint.pt``) stays the one that ``--resume`` reads;
Ray's checkpoint reporting is not used. On a cluster of several nodes the output folder (and
the data) must therefore be on storage that every node sees at the same path.

Ray is imported only inside these functions: the caller connects first
(:func:`~lookalike.inference.ray_session.ray_session`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.errors import LookalikeError, first_line
from lookalike.training.distributed import World

__all__ = ["RayPlan", "launch_ray", "plan_ray"]

RUN_NAME = "ray"
"""Ray Train's run folder, under the ``storage`` folder given to :func:`launch_ray`."""


@dataclass(frozen=True)
class RayPlan:
    """How the workers are placed on the Ray cluster.

    Attributes:
        workers: Training processes (Ray Train workers), one rank each.
        use_gpu: One GPU per worker (NCCL) instead of CPUs (gloo).
        cpus: CPUs reserved for each worker (``None``: Ray Train's default, one CPU for a CPU
            worker and none beside a GPU); Ray sets the worker's thread count to it.
    """

    workers: int
    use_gpu: bool
    cpus: int | None = None

    def scaling(self) -> Any:
        """Ray Train's ``ScalingConfig`` for this plan."""
        import ray.train

        each = None if self.cpus is None else {"CPU": self.cpus}
        return ray.train.ScalingConfig(
            num_workers=self.workers, use_gpu=self.use_gpu, resources_per_worker=each
        )


def plan_ray(workers: int, device: str | None, *, threads: int | None = None) -> RayPlan:
    """Check that the connected Ray cluster can hold ``workers`` workers now, and choose GPUs.

    Args:
        workers: Training processes asked for (``--nproc``).
        device: ``None``/``"auto"``: one GPU per worker when the cluster has enough GPUs,
            else CPUs; ``"cuda"`` (or ``"cuda:K"``): GPUs, required; anything else: CPUs.
        threads: CPU threads of each worker (``--threads``), reserved as its CPUs.

    Raises:
        LookalikeError: Too few GPUs (with ``"cuda"``) or CPUs on the cluster: Ray would
            otherwise wait for them without end.
    """
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    wants = (device or "auto").split(":")[0]
    if wants == "cuda" and gpus < workers:
        raise LookalikeError(
            f"--nproc {workers} with --device cuda needs {workers} GPUs on the Ray cluster; "
            f"it has {gpus}"
        )
    use_gpu = wants == "cuda" or (wants == "auto" and gpus >= workers)
    each = threads or (0 if use_gpu else 1)
    if cpus < workers * each:
        raise LookalikeError(
            f"--nproc {workers} needs {workers * each} CPUs on the Ray cluster ({each} per "
            f"worker); it has {cpus}"
        )
    return RayPlan(workers, use_gpu, threads)


def launch_ray(
    plan: RayPlan,
    fn: Callable[..., Any],
    *args: Any,
    storage: str | Path,
) -> None:
    """Run ``fn(world, *args)`` in ``plan.workers`` Ray Train workers and wait for them.

    Ray must be connected (:func:`~lookalike.inference.ray_session.ray_session`). ``fn`` and
    ``args`` are pickled to the workers: ``fn`` must be importable there (lookalike installed
    on every node) and paths in ``args`` must be absolute and reachable from every node. What
    rank 0 prints (stdout and stderr, line by line) is printed here, as it comes.

    Args:
        plan: Workers and GPUs (:func:`plan_ray`).
        fn: Called in each worker with its :class:`World` first.
        storage: A folder every worker can reach (the model folder's ``training/``): Ray
            Train checks its run folder there at start; it is removed at the end.

    Raises:
        LookalikeError: A worker failed: its :class:`LookalikeError` as it is, else one
            line naming the error; or Ray Train itself failed.
        KeyboardInterrupt: Ctrl-C (Ray aborts the workers first).
    """
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    # Ray Train's workers send every print() to the driver's log as well: ours come once.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    lines = Queue(actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"fn": fn, "args": args, "lines": lines},
        scaling_config=plan.scaling(),
        run_config=ray.train.RunConfig(storage_path=str(storage), name=RUN_NAME),
    )
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with _printing(lines):
            trainer.fit()
    except ray.train.WorkerGroupError as exc:
        raise _worker_error(exc.worker_failures) from None
    except ray.train.TrainingFailedError as exc:
        raise LookalikeError(f"Ray Train failed: {first_line(exc)}") from None
    except SystemExit as exc:
        # Ray's own Ctrl-C handler aborts the workers and then ends the driver this way.
        raise KeyboardInterrupt from exc
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)  # fit() installs Ray's handler for good
        lines.shutdown(force=True)
        shutil.rmtree(Path(storage) / RUN_NAME, ignore_errors=True)


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: its rank as a :class:`World`, then ``fn``; rank 0's output
    goes to the driver."""
    import ray.train

    context = ray.train.get_context()
    world = World(context.get_world_rank(), context.get_world_size())
    forward = _forwarding(config["lines"]) if world.rank == 0 else nullcontext()
    with forward:
        config["fn"](world, *config["args"])


def _worker_error(failures: Mapping[int, BaseException]) -> LookalikeError:
    """One error for the failed workers: a user's mistake (a :class:`LookalikeError`, or the
    ``ValueError`` of settings only the data can refute) first, else the lowest rank's error
    (the others often only lost their connection to it)."""
    ranked = sorted(failures.items())
    for _, error in ranked:
        if isinstance(error, LookalikeError):
            return error
    for _, error in ranked:
        if isinstance(error, ValueError):
            return LookalikeError(str(error))
    rank, error = ranked[0]
    return LookalikeError(
        f"training process {rank} failed: {type(error).__name__}: {first_line(error)}"
    )


class _LineWriter:
    """A text stream that sends each finished line to the driver (``(stream, line)``)."""

    def __init__(self, lines: Any, stream: str) -> None:
        self.lines, self.stream, self.pending = lines, stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        *done, self.pending = self.pending.split("\n")
        for line in done:
            self.lines.put((self.stream, line))
        return len(text)

    def flush(self) -> None:
        """Lines are sent as they end; a partial line waits for its end."""

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        if self.pending:
            self.lines.put((self.stream, self.pending))
            self.pending = ""


@contextmanager
def _forwarding(lines: Any) -> Iterator[None]:
    """In a worker: ``sys.stdout`` and ``sys.stderr`` go to the driver, line by line."""
    out, err = _LineWriter(lines, "stdout"), _LineWriter(lines, "stderr")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        out.close()
        err.close()


@contextmanager
def _printing(lines: Any) -> Iterator[None]:
    """In the driver: print what the workers send while the ``with`` block runs, and what is
    left once it ends (every ``put`` has returned by then)."""
    stop = threading.Event()

    def show(block: bool) -> bool:
        from ray.util.queue import Empty

        try:
            stream, line = lines.get(block=block, timeout=0.2 if block else None)
        except Empty:
            return False
        print(line, file=sys.stdout if stream == "stdout" else sys.stderr, flush=True)
        return True

    def pump() -> None:
        try:
            while not stop.is_set():
                show(block=True)
        except Exception:  # Ray going down: what is left is read after the block
            return

    thread = threading.Thread(target=pump, name="lookalike-ray-lines", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        while show(block=False):
            pass
