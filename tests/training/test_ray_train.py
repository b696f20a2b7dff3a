"""Ray Train as the launcher (a real local Ray with 2 CPUs, gloo): the same steps as the
torch.multiprocessing processes and as one process, an exact resume after a crashed Ray run,
and ``train --nproc N --ray`` end to end; without ``--ray`` nothing imports Ray."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_ddp import _cli, _losses, _max_diff, _train

import lookalike
from glyphs import write_identity_folder
from lookalike.cli import main
from lookalike.errors import DataError, LookalikeError
from lookalike.model.network import SiameseModel
from lookalike.training.distributed import World, launch
from lookalike.training.ray_train import RUN_NAME, RayPlan, _worker_error, launch_ray, plan_ray
from lookalike.training.trainer import Trainer

ray = pytest.importorskip("ray")
pytest.importorskip("ray.train.torch")

HERE = Path(__file__).resolve().parent
SRC = str(Path(lookalike.__file__).resolve().parents[1])
TWO = RayPlan(workers=2, use_gpu=False)


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lookalike: error: "), err
    for word in words:
        assert word in err[0], err[0]


# -- before any Ray is started (these tests run first: the module's Ray is started later) ------


def test_ray_mistakes_are_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not ray.is_initialized()
    root = write_identity_folder(tmp_path / "ids", n_ids=3, per_id=3)
    for extra, words in (
        (["--ray"], ["--ray trains in --nproc N Ray workers"]),
        (["--ray-verbose"], ["--ray-verbose needs --ray"]),
        (["--ray", "--nproc", "2", "--batch-size", "13"], ["multiple of 2"]),
        (["--ray", "127.0.0.1:1", "--nproc", "2"], ["cannot reach the Ray cluster"]),
    ):
        out = tmp_path / "m"
        assert main(_cli(root, out, *extra)) == 2, extra
        _one_line_error(capsys, *words)
    assert not ray.is_initialized()


_NO_RAY = """
import json, sys
from lookalike.cli import main
assert main(json.loads(sys.argv[1])) == 0
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
assert not loaded, loaded
print("no ray")
"""


def test_train_without_ray_imports_no_ray(tmp_path: Path) -> None:
    argv = _cli(write_identity_folder(tmp_path / "ids"), tmp_path / "m")
    run = subprocess.run(
        [sys.executable, "-c", _NO_RAY, json.dumps(argv)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no ray" in run.stdout


def test_worker_errors_become_one_error() -> None:
    data = DataError("the batch size (13) must be a multiple")
    picked = _worker_error({0: ConnectionError("peer gone"), 1: data})
    assert picked is data  # the user's mistake, not rank 0's lost connection
    assert str(_worker_error({1: ValueError("bad pml argument")})) == "bad pml argument"
    bug = _worker_error({1: KeyError("x"), 0: RuntimeError("boom\ntrace")})
    assert str(bug) == "training process 0 failed: RuntimeError: boom"


# -- on a local Ray (2 CPUs) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_two_epochs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray for the module (workers import lookalike and these tests from PYTHONPATH),
    and one uninterrupted 2-epoch run on 2 Ray Train workers."""
    from lookalike.inference.ray_session import ray_session

    paths = [SRC, str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(paths))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        # A crashed run: Ray waits this long (default 30 s) for the stuck rank to leave gloo.
        mp.setenv("TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S", "3")
        with ray_session(None, workers=1):  # 2 CPUs
            out = tmp_path_factory.mktemp("ray_train") / "two"
            launch_ray(TWO, _train, out, 2, False, storage=out / "training")
            yield out
    assert not ray.is_initialized()


def test_ray_workers_follow_the_processes_and_one_process(
    ray_two_epochs: Path, tmp_path: Path
) -> None:
    single, processes = tmp_path / "one", tmp_path / "processes"
    _train(None, single, 2, False)
    launch(2, _train, processes, 2, False)
    on_ray = _losses(ray_two_epochs)
    assert len(on_ray) == 2
    # The launcher changes nothing (measured: identical); one process differs by float sums.
    assert on_ray == pytest.approx(_losses(processes), abs=1e-6)
    assert _max_diff(ray_two_epochs, processes) < 1e-6
    assert on_ray == pytest.approx(_losses(single), abs=1e-4)  # measured 1e-7
    assert _max_diff(ray_two_epochs, single) < 5e-4  # Adam steps of 3e-3: measured 1.8e-5
    assert _max_diff(single, single / "start.pt") > 1e-2  # the weights did move
    assert not (ray_two_epochs / "training" / RUN_NAME).exists()  # Ray's run folder removed


def _crash_in_epoch_2(world: World, out: Path) -> None:
    """The 2-epoch run, but rank 0 dies as epoch 2 is measured (after epoch 1's checkpoint)."""
    real = Trainer._report

    def report(self: Trainer, record: Any) -> None:
        if record.epoch == 2 and world.rank == 0:
            raise RuntimeError("crashed in epoch 2")
        real(self, record)

    Trainer._report = report  # type: ignore[method-assign]  # this worker process only
    try:
        _train(world, out, 2, False)
    finally:
        Trainer._report = real  # type: ignore[method-assign]


def test_resume_after_a_crashed_ray_run_continues_exactly(
    ray_two_epochs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "crashed"
    with pytest.raises(LookalikeError, match=r"training process 0 failed: .*crashed in epoch 2"):
        launch_ray(TWO, _crash_in_epoch_2, out, storage=out / "training")
    assert (out / "training" / "checkpoint.pt").is_file()
    assert not (out / "losses.json").exists()  # it did not finish
    launch_ray(TWO, _train, out, 2, True, storage=out / "training")
    assert _losses(out)[-1:] == pytest.approx(_losses(ray_two_epochs)[-1:], abs=1e-6)
    assert _max_diff(out, ray_two_epochs) < 1e-6


def test_cli_nproc_ray_trains_a_model_folder(
    ray_two_epochs: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = write_identity_folder(tmp_path / "ids")
    monkeypatch.chdir(tmp_path)  # relative paths: the workers run in another folder
    model_dir = Path("m")
    assert main(_cli(Path("ids"), model_dir, "--nproc", "2", "--ray")) == 0
    captured = capfd.readouterr()
    out = captured.out
    assert out.count("epoch   1  train loss") == 1, out  # rank 0 alone reports, here
    assert "validation pair accuracy" in out
    assert captured.err.count("train: 1 epochs") == 1, captured.err  # rank 0's stderr too
    assert "epoch   1" not in captured.err  # not twice: Ray Train's own copy of print() is off
    assert root.is_dir() and SiameseModel.load(model_dir).thresholds
    assert (model_dir / "training" / "checkpoint.pt").is_file()
    assert not (model_dir / "training" / RUN_NAME).exists()
    assert ray.is_initialized()  # the module's Ray, used as it is and left running


def test_the_plan_fits_the_cluster(ray_two_epochs: Path) -> None:
    """The module's Ray has 2 CPUs and no GPU: what does not fit is refused, not waited for."""
    assert plan_ray(2, "auto") == RayPlan(2, use_gpu=False)
    assert plan_ray(1, "cpu", threads=2) == RayPlan(1, use_gpu=False, cpus=2)
    for workers, device, threads, words in (
        (3, "cpu", None, "needs 3 CPUs on the Ray cluster (1 per worker); it has 2"),
        (2, "auto", 2, "needs 4 CPUs"),
        (1, "cuda", None, "needs 1 GPUs on the Ray cluster; it has 0"),
    ):
        with pytest.raises(LookalikeError, match=re.escape(words)):
            plan_ray(workers, device, threads=threads)
