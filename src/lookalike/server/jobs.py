"""Background jobs with progress, one at a time (the server's head training).

A job runs in its own daemon thread and reports (step, total, loss) as it goes; the API
polls :meth:`JobRunner.get`. Starting a second job while one runs raises
:class:`JobRunningError`, which the API answers with 409.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lookalike.errors import LookalikeError

log = logging.getLogger("lookalike.server")

State = Literal["running", "succeeded", "failed"]
Phase = Literal["embedding", "training", "done"]


class JobRunningError(Exception):
    """Another job is still running."""


@dataclass(frozen=True)
class JobSnapshot:
    """A job's state at one moment (immutable: safe to hand to another thread)."""

    id: str
    state: State
    phase: Phase
    step: int
    total: int
    loss: float | None
    started: float
    finished: float | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


class Job:
    """A running job's handle: the work function reports progress through it."""

    def __init__(self, job_id: str, total: int) -> None:
        self._lock = threading.Lock()
        self._snapshot = JobSnapshot(job_id, "running", "embedding", 0, total, None, time.time())

    @property
    def id(self) -> str:
        """The job id."""
        return self._snapshot.id

    def snapshot(self) -> JobSnapshot:
        """The current state."""
        with self._lock:
            return self._snapshot

    def progress(self, step: int, total: int, loss: float) -> None:
        """Record a training step (signature of ``fewshot.StepCallback``)."""
        with self._lock:
            self._snapshot = replace(
                self._snapshot, phase="training", step=step, total=total, loss=loss
            )

    def _finish(self, state: State, error: str | None, result: dict[str, Any]) -> None:
        with self._lock:
            self._snapshot = replace(
                self._snapshot,
                state=state,
                phase="done",
                finished=time.time(),
                error=error,
                result=result,
            )


Work = Callable[[Job], dict[str, Any]]


class JobRunner:
    """Runs at most one job at a time and remembers the last ``keep`` jobs.

    Args:
        keep: How many finished jobs stay queryable.
    """

    def __init__(self, keep: int = 50) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._running: Job | None = None
        self._thread: threading.Thread | None = None
        self.keep = keep

    def start(self, work: Work, *, total: int) -> Job:
        """Start ``work(job)`` in a background thread.

        ``work`` returns a dict of results on success; a :class:`LookalikeError` it raises
        becomes the job's error message, anything else a generic one (logged here).

        Raises:
            JobRunningError: A job is running; wait for it.
        """
        with self._lock:
            if self._running is not None:
                raise JobRunningError("a training job is running, wait for it")
            job = Job(uuid.uuid4().hex, total)
            self._running = job
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
            self._thread = threading.Thread(
                target=self._run, args=(job, work), name=f"lookalike-job-{job.id[:8]}", daemon=True
            )
            self._thread.start()
        return job

    def _run(self, job: Job, work: Work) -> None:
        state: State = "failed"
        error: str | None = None
        result: dict[str, Any] = {}
        try:
            result = work(job)
            state = "succeeded"
        except LookalikeError as exc:
            error = str(exc)
        except Exception:
            log.exception("job %s failed", job.id)
            error = "training failed with an internal error (see the server log)"
        finally:
            # Free the slot before publishing the outcome: whoever sees "succeeded" can start
            # the next job at once.
            with self._lock:
                self._running = None
            job._finish(state, error, result)

    def get(self, job_id: str) -> JobSnapshot | None:
        """A job's current state, or ``None`` for an unknown id."""
        with self._lock:
            job = self._jobs.get(job_id)
        return None if job is None else job.snapshot()

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        with self._lock:
            return self._running is not None

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the running job's thread to end (for tests and shutdown)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
