"""Multi-process training (gloo on CPU): the same steps as one process, and an exact resume."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from glyphs import write_identity_folder
from lookalike.cli import main
from lookalike.data.augment import Augment
from lookalike.errors import DataError
from lookalike.model.network import SiameseModel
from lookalike.training.config import TrainConfig, TrainData
from lookalike.training.distributed import World, launch
from lookalike.training.recipes import ModelSpec
from lookalike.training.trainer import Trainer

SMALL = ModelSpec(backbone="small_cnn", pretrained=False, image_size=16)


def _data(seed: int, n_ids: int = 6, per_id: int = 6) -> TrainData:
    """Tiny identities: a fixed random pattern per identity plus per-image noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n_ids, 1, 16, 16), generator=g).float()
    noise = torch.randn((n_ids, per_id, 1, 16, 16), generator=g) * 40
    pixels = (base[:, None] + noise).clamp(0, 255).to(torch.uint8).reshape(-1, 1, 16, 16)
    labels = torch.arange(n_ids).repeat_interleave(per_id)
    return TrainData(pixels, labels)


def _config(epochs: int, loss: str = "triplet", miner: str = "semihard") -> TrainConfig:
    return TrainConfig(
        loss=loss,
        miner=miner,
        epochs=epochs,
        batch_size=12,
        m_per_class=3,
        steps_per_epoch=3,
        lr=3e-3,
        schedule="none",
        augment=Augment.off(),
        val_pairs=60,
        patience=None,
        seed=0,
    )


def _train(
    world: World | None,
    out: Path,
    epochs: int,
    resume: bool,
    loss: str = "triplet",
    miner: str = "semihard",
) -> None:
    """Build the same model everywhere, train, and (rank 0) write losses and final weights."""
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    model = SMALL.build(head=False)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(
        model, _data(1), _data(2), _config(epochs, loss, miner), out, pretrained=False, world=world
    )
    result = trainer.fit(resume=resume)
    if world is None or world.rank == 0:
        losses = [r.train_loss for r in result.history if r.train_loss is not None]
        (out / "losses.json").write_text(json.dumps(losses))
        torch.save(start, out / "start.pt")


def _losses(out: Path) -> list[float]:
    return [float(v) for v in json.loads((out / "losses.json").read_text())]


def _max_diff(a: Path, b: Path) -> float:
    """Largest difference of the last epoch's weights (the checkpoint's, not the best epoch's)."""
    path = Path("training") / "checkpoint.pt"
    sa = torch.load(a / path, weights_only=True)["model"]
    sb = (
        torch.load(b / path, weights_only=True)["model"]
        if b.is_dir()
        else torch.load(b, weights_only=True)
    )
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


@pytest.mark.parametrize(
    ("loss", "miner"),
    [
        ("triplet", "semihard"),  # our loss and miner
        ("pml:ArcFaceLoss", "semihard"),  # proxies: parameters of the loss, outside DDP
        ("pml:MultiSimilarityLoss", "pml:MultiSimilarityMiner"),  # a pml miner
    ],
)
def test_two_processes_match_one(tmp_path: Path, loss: str, miner: str) -> None:
    single, double = tmp_path / "one", tmp_path / "two"
    _train(None, single, 2, False, loss, miner)
    launch(2, _train, double, 2, False, loss, miner)
    one, two = _losses(single), _losses(double)
    assert len(one) == len(two) == 2
    assert two == pytest.approx(one, abs=1e-4)
    assert _max_diff(single, single / "start.pt") > 1e-2  # the weights did move
    assert _max_diff(single, double) < 5e-4  # Adam steps of 3e-3: measured 2e-5 to 4e-5


def test_two_processes_resume_exactly(tmp_path: Path) -> None:
    double, stopped = tmp_path / "two", tmp_path / "stopped"
    launch(2, _train, double, 2, False)
    two = _losses(double)
    # Stopped after 1 epoch, resumed to 2: ends where the uninterrupted 2-process run ends.
    launch(2, _train, stopped, 1, False)
    launch(2, _train, stopped, 2, True)
    assert _losses(stopped)[-2:] == pytest.approx(two[-2:], abs=1e-6)
    assert _max_diff(stopped, double) < 1e-6


def test_what_cannot_be_shared_is_refused(tmp_path: Path) -> None:
    """Checked before any process group is needed: no processes to start."""
    world, model = World(0, 2), SMALL.build(head=False)
    for bad, why in (
        ({"batch_size": 13}, "multiple of the number"),
        ({"sampling": "triplets"}, "balanced"),
    ):
        cfg = replace(_config(1), **bad)  # type: ignore[arg-type]
        with pytest.raises(DataError, match=why):
            Trainer(model, _data(1), _data(2), cfg, tmp_path, pretrained=False, world=world)


def _cli(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(root),
        "--out",
        str(out),
        "--backbone",
        "small_cnn",
        "--no-pretrained",
        "--image-size",
        "16",
        "--loss",
        "contrastive",
        "--epochs",
        "1",
        "--batch-size",
        "12",
        "--m-per-class",
        "3",
        "--steps-per-epoch",
        "2",
        "--no-augment",
        "--split",
        "image",
        "--no-guard",
        "--device",
        "cpu",
        *extra,
    ]


def test_cli_nproc_trains_a_model_folder(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    root = write_identity_folder(tmp_path / "ids")
    model_dir = tmp_path / "m"
    assert main(_cli(root, model_dir, "--nproc", "2")) == 0
    out = capfd.readouterr().out
    assert out.count("epoch   1  train loss") == 1, out  # rank 0 alone reports
    assert "validation pair accuracy" in out
    assert SiameseModel.load(model_dir).thresholds
    assert (model_dir / "training" / "checkpoint.pt").is_file()


def test_cli_nproc_is_validated(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    root = write_identity_folder(tmp_path / "ids", n_ids=3, per_id=3)
    cores = os.cpu_count() or 1
    for bad in ("0", str(cores + 1)):
        assert main(_cli(root, tmp_path / f"m{bad}", "--nproc", bad)) == 2
        # more than the cores only with --ray (test_ray_train.py), so 0 names the Ray bound
        most = cores if bad != "0" else 4096
        assert f"--nproc must be at least 1 and at most {most}" in capfd.readouterr().err
    assert main(_cli(root, tmp_path / "odd", "--nproc", "2", "--batch-size", "13")) == 2
    assert "multiple of 2" in capfd.readouterr().err


def _fails_on_rank_1(world: World, out: Path) -> None:
    (out / f"pid{world.rank}").write_text(str(os.getpid()))
    if world.rank == 1:
        raise ValueError("rank 1 fails")
    world.barrier()  # would wait for ever: the launcher must end this process


def test_a_failing_process_ends_the_others(tmp_path: Path) -> None:
    from torch.multiprocessing.spawn import ProcessRaisedException

    # Which failure is reported is a race: rank 1's error, or rank 0's lost connection.
    with pytest.raises(ProcessRaisedException, match=r"rank 1 fails|Connection|terminated"):
        launch(2, _fails_on_rank_1, tmp_path)
    for rank in (0, 1):
        pid = int((tmp_path / f"pid{rank}").read_text())
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )
