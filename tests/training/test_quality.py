"""Training that does not fool itself: intervals per epoch, the split chosen from the data,
refit, training further from a model folder, the WiSE-FT guard, pytorch-metric-learning
losses by name, and the warnings of ``lookalike train`` and ``lookalike eval``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glyphs import glyph_images, write_identity_folder
from lookalike.cli import main
from lookalike.data.augment import Augment
from lookalike.data.decode import decode_all
from lookalike.data.labelled import LabelledImages
from lookalike.data.split import choose_split, split
from lookalike.errors import DataError
from lookalike.evaluation.evaluate import EvalResult, SubjectResult
from lookalike.metrics.episodes import EpisodeReport
from lookalike.metrics.verification import verify
from lookalike.model.network import SiameseModel
from lookalike.training.checkpoint import EpochRecord
from lookalike.training.config import TrainConfig, TrainData
from lookalike.training.guard import ALPHAS, guard, interpolate
from lookalike.training.recipes import ModelSpec, train_model
from lookalike.training.trainer import Trainer
from lookalike.training.validation import PairValidator
from server_helpers import glyph

SMALL = ModelSpec(backbone="small_cnn", pretrained=False, image_size=16)


def _config(**kw: object) -> TrainConfig:
    """Tiny, fast settings: 16 px glyphs, a few small batches per epoch."""
    base = {
        "loss": "contrastive",
        "miner": "all",
        "epochs": 2,
        "batch_size": 32,
        "m_per_class": 4,
        "steps_per_epoch": 6,
        "lr": 3e-3,
        "augment": Augment.off(),
        "val_pairs": 300,
        "patience": None,
        "seed": 0,
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _glyphs(n_ids: int, per_id: int, seed: int = 0) -> LabelledImages:
    """16 px generated glyph identities (tests/glyphs.py)."""
    images, labels = glyph_images(n_ids=n_ids, per_id=per_id, size=16, seed=seed)
    return LabelledImages.from_arrays(images, labels)


def _state(model: SiameseModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=0, msg=key)


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(value, b[key]) for key, value in a.items())


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Bitwise-reproducible CPU training (multithreaded conv backward differs run to run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# -- the guard -----------------------------------------------------------------------------


def test_interpolate_mixes_float_tensors_and_copies_the_rest() -> None:
    torch.manual_seed(0)
    start = _state(SiameseModel.create("small_cnn", pretrained=False, input_size=16))
    tuned = _state(SiameseModel.create("small_cnn", pretrained=False, input_size=16))
    counters = [k for k, v in start.items() if not v.is_floating_point()]
    assert counters, "small_cnn has batch-norm counters (int64)"
    for key in counters:
        start[key] = torch.tensor(3)
        tuned[key] = torch.tensor(11)
    weight = "backbone.features.0.weight"
    assert not torch.equal(start[weight], tuned[weight])
    _assert_same_state(interpolate(start, tuned, 0.0), start | {k: tuned[k] for k in counters})
    _assert_same_state(interpolate(start, tuned, 1.0), tuned)
    half = interpolate(start, tuned, 0.5)
    for key, value in start.items():
        if value.is_floating_point():
            torch.testing.assert_close(half[key], (value + tuned[key]) / 2, msg=key)
        else:
            assert int(half[key]) == 11, key
    half[weight].zero_()  # a new state dict: the inputs are untouched
    assert tuned[weight].abs().sum() > 0 and start[weight].abs().sum() > 0


def test_interpolate_refuses_bad_alpha_and_mismatched_states() -> None:
    state = _state(SiameseModel.create("small_cnn", pretrained=False, input_size=16))
    for alpha in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            interpolate(state, state, alpha)
    fewer = dict(state)
    fewer.pop("backbone.features.0.weight")
    with pytest.raises(ValueError, match="different keys"):
        interpolate(state, fewer, 0.5)


def _noisy_glyphs(n_ids: int, copies: int) -> TrainData:
    """Fixed 28 px block glyphs with light noise: a random CNN already tells them apart."""
    images = [glyph(k, noise_seed=100 * k + j) for k in range(n_ids) for j in range(copies)]
    labels = np.repeat(np.arange(n_ids), copies)
    return TrainData(torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(labels))


def test_guard_keeps_the_start_when_training_made_it_worse() -> None:
    torch.manual_seed(0)
    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28)
    validator = PairValidator(model, _noisy_glyphs(24, 4), _config(val_pairs=400), 1.0)
    start = _state(model)
    start_accuracy = validator.accuracy(model)
    assert start_accuracy >= 0.9, "the start must separate the validation identities"
    with torch.no_grad():  # "training" collapsed the network: every conv weight is zero
        for param in model.parameters():
            if param.ndim == 4:
                param.zero_()
    assert validator.accuracy(model) <= 0.55
    decision = guard(model, start, validator)
    assert decision.alpha == 0.0 and decision.kept is None
    assert decision.reason.startswith("kept the pretrained backbone")
    assert "24 identities" in decision.reason
    assert [c.alpha for c in decision.candidates] == sorted(ALPHAS)
    assert not any(c.significant for c in decision.candidates)
    tuned = decision.candidates[-1]
    assert tuned.alpha == 1.0 and tuned.gain.high < 0  # worse beyond chance
    _assert_same_state(_state(model), start)
    assert validator.accuracy(model) == start_accuracy


def test_guard_keeps_a_clearly_better_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images, labels = glyph_images(n_ids=12, per_id=12, size=16)
    pixels, ids = torch.from_numpy(images[:, None]), torch.from_numpy(labels)
    model = SMALL.build(head=False)
    start = _state(model)
    cfg = _config(epochs=3, steps_per_epoch=20, val_pairs=400)
    trainer = Trainer(
        model,
        TrainData(pixels[::2], ids[::2]),
        TrainData(pixels[1::2], ids[1::2]),
        cfg,
        tmp_path,
        pretrained=False,
    )
    start_accuracy = trainer.validator.accuracy(model)
    trainer.run_epochs()
    tuned = _state(model)
    assert trainer.validator.accuracy(model) >= start_accuracy + 0.2
    decision = guard(model, start, trainer.validator)
    assert decision.alpha > 0.0
    kept = decision.kept
    assert kept is not None and kept.significant and kept.gain.low > 0
    assert kept.gain.identities == 12
    assert decision.reason.startswith("kept ") and "pretrained backbone" not in decision.reason[:30]
    expected = tuned if decision.alpha == 1.0 else interpolate(start, tuned, decision.alpha)
    _assert_same_state(_state(model), expected)
    assert trainer.validator.accuracy(model) == pytest.approx(kept.accuracy)


# -- train_model: the report per epoch, the split, refit, start_from ------------------------


def test_on_epoch_reports_every_epoch_with_its_interval(tmp_path: Path) -> None:
    records: list[EpochRecord] = []
    torch.manual_seed(0)
    result = train_model(
        _glyphs(8, 8),
        tmp_path / "m",
        model_spec=SMALL,
        config=_config(epochs=2, steps_per_epoch=4),
        refit=False,
        on_epoch=records.append,
    )
    assert [r.epoch for r in records] == [0, 1, 2]
    assert records == result.history
    assert records[0].train_loss is None and records[1].train_loss is not None
    for record in records:
        assert record.val_ci_low is not None and record.val_ci_high is not None
        assert record.val_ci_low <= record.val_accuracy <= record.val_ci_high, record
        assert record.val_ci_low < record.val_ci_high
        assert record.val_identities == 8 and record.val_pairs == 300
    saved = json.loads((tmp_path / "m" / "training" / "history.json").read_text())
    assert [r["val_ci_low"] for r in saved["history"]] == [r.val_ci_low for r in records]
    assert result.final is not None and result.final.identities == 8


def test_the_split_is_chosen_from_the_data(tmp_path: Path) -> None:
    few = train_model(_glyphs(4, 10), tmp_path / "few", model_spec=SMALL, config=_config(epochs=0))
    assert few.split is not None and few.split.kind == "image" and few.split.chosen
    assert "these identities only" in few.split.reason
    assert few.final is not None and few.final.identities == 4
    assert any("held out images of the training identities" in w for w in few.warnings)
    data = _glyphs(48, 10)
    many = train_model(data, tmp_path / "many", model_spec=SMALL, config=_config(epochs=0))
    assert many.split is not None and many.split.kind == "identity" and many.split.chosen
    assert many.final is not None and many.final.identities == 10  # round(0.2 × 48)
    assert not any("held out images" in w for w in many.warnings)
    provenance = SiameseModel.load(tmp_path / "many").provenance
    assert provenance["split"]["kind"] == "identity"
    given = train_model(
        data, tmp_path / "given", model_spec=SMALL, config=_config(epochs=0), split="image"
    )
    assert given.split is not None and given.split.kind == "image" and not given.split.chosen
    assert given.final is not None and given.final.identities == 48


def test_refit_trains_again_on_everything_and_keeps_the_validation_figures(
    tmp_path: Path, one_thread: None
) -> None:
    data = _glyphs(10, 10)
    results = {}
    for refit in (False, True):
        torch.manual_seed(0)
        results[refit] = train_model(
            data,
            tmp_path / str(refit),
            model_spec=SMALL,
            config=_config(epochs=2, steps_per_epoch=8),
            refit=refit,
        )
    plain, refitted = results[False], results[True]
    assert plain.best_epoch > 0, "refit needs an epoch that beat the start"
    assert refitted.refit is True and plain.refit is False
    assert refitted.best_epoch == plain.best_epoch
    assert [r.val_accuracy for r in refitted.history] == [r.val_accuracy for r in plain.history]
    assert refitted.final == plain.final
    a, b = SiameseModel.load(tmp_path / "False"), SiameseModel.load(tmp_path / "True")
    assert _differs(_state(a), _state(b)), "the refit model must be trained again"
    assert a.thresholds == b.thresholds
    assert a.metrics["val_pair_accuracy"] == b.metrics["val_pair_accuracy"]
    assert a.provenance["refit"] is False and b.provenance["refit"] is True


def test_start_from_continues_from_a_model_folder(tmp_path: Path) -> None:
    data = _glyphs(8, 8)
    torch.manual_seed(0)
    train_model(
        data,
        tmp_path / "start",
        model_spec=SMALL,
        config=_config(epochs=1, steps_per_epoch=4),
        refit=False,
    )
    start = SiameseModel.load(tmp_path / "start")
    # No epochs: the saved model is the start, whatever model_spec says.
    torch.manual_seed(1)
    still = train_model(
        data,
        tmp_path / "still",
        model_spec=SMALL,
        config=_config(epochs=0),
        start_from=tmp_path / "start",
    )
    assert still.guard is not None and still.guard.alpha == 0.0
    _assert_same_state(_state(SiameseModel.load(tmp_path / "still")), _state(start))
    # One epoch: epoch 0 is the start model on the same validation pairs.
    cfg = _config(epochs=1, steps_per_epoch=2)
    torch.manual_seed(2)
    further = train_model(
        data, tmp_path / "further", model_spec=SMALL, config=cfg, start_from=tmp_path / "start"
    )
    choice = choose_split(data, 0.2)
    _, val_set = split(data, choice.kind, 0.2, seed=cfg.seed)
    decoded = decode_all(val_set, start.preprocess)
    validator = PairValidator(start, TrainData(decoded.pixels, decoded.labels), cfg, 1.0)
    assert further.history[0].val_accuracy == pytest.approx(validator.accuracy(start), abs=1e-12)
    assert further.history[0].val_accuracy == pytest.approx(start.metrics["val_pair_accuracy"])
    fresh = SMALL.build(head=False)
    assert validator.accuracy(fresh) != further.history[0].val_accuracy
    assert further.history[-1].epoch == 1


# -- pytorch-metric-learning by name ---------------------------------------------------------


def test_pml_multi_similarity_loss_and_miner_train(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = _config(loss="pml:MultiSimilarityLoss", miner="pml:MultiSimilarityMiner", epochs=1)
    result = train_model(_glyphs(8, 8), tmp_path / "m", model_spec=SMALL, config=cfg)
    record = result.history[-1]
    assert record.epoch == 1 and record.train_loss is not None and np.isfinite(record.train_loss)
    assert record.train_loss > 0 and record.scored > 0
    saved = SiameseModel.load(tmp_path / "m")
    assert saved.provenance["train_config"]["loss"] == "pml:MultiSimilarityLoss"
    assert saved.provenance["train_config"]["miner"] == "pml:MultiSimilarityMiner"


def _arcface_trainer(out: Path, data: LabelledImages, epochs: int) -> Trainer:
    images = np.stack(list(data.sources))
    pixels, labels = torch.from_numpy(images[:, None]), torch.from_numpy(data.labels)
    torch.manual_seed(1)
    model = SMALL.build(head=False)
    cfg = _config(loss="pml:ArcFaceLoss", loss_args={"margin": 28.6}, epochs=epochs)
    return Trainer(
        model,
        TrainData(pixels[::2], labels[::2]),
        TrainData(pixels[1::2], labels[1::2]),
        cfg,
        out,
        pretrained=False,
    )


def test_arcface_proxies_train_and_are_checkpointed(tmp_path: Path) -> None:
    trainer = _arcface_trainer(tmp_path / "m", _glyphs(8, 8), epochs=1)
    before = {k: v.detach().clone() for k, v in trainer.loss_fn.state_dict().items()}
    assert "W" in before and tuple(before["W"].shape) == (trainer.model.embedding_dim, 8)
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in trainer.loss_fn.parameters())
    result = trainer.fit()
    assert np.isfinite(result.history[-1].train_loss or float("nan"))
    saved = torch.load(tmp_path / "m" / "training" / "checkpoint.pt", weights_only=True)
    assert set(saved["loss"]) == set(before)
    assert not torch.equal(saved["loss"]["W"], before["W"]), "the proxies must train"
    torch.testing.assert_close(saved["loss"]["W"], trainer.loss_fn.state_dict()["W"])
    assert saved["config"]["loss_args"] == {"margin": 28.6}


@pytest.mark.parametrize("how", ["interrupted", "extended"])
def test_arcface_resume_gives_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None, how: str
) -> None:
    """An interrupted 2-epoch run, resumed, ends where the straight run ends (proxies too).

    "extended": a finished 1-epoch run continued to 2 epochs; only with a constant learning
    rate, since a cosine schedule of 1 epoch has already annealed to 0 at its end.
    """
    data = _glyphs(8, 8)
    schedule = "cosine" if how == "interrupted" else "none"

    def run(out: Path, epochs: int, resume: bool = False) -> None:
        torch.manual_seed(0)
        cfg = _config(
            loss="pml:ArcFaceLoss",
            loss_args={"margin": 28.6},
            epochs=epochs,
            steps_per_epoch=4,
            schedule=schedule,
        )
        train_model(data, out, model_spec=SMALL, config=cfg, refit=False, resume=resume)

    run(tmp_path / "straight", 2)
    if how == "interrupted":
        real_epoch = Trainer._train_epoch

        def crash_at_2(self: Trainer, epoch: int) -> tuple[float, int, int, float]:
            if epoch == 2:
                raise KeyboardInterrupt
            return real_epoch(self, epoch)

        monkeypatch.setattr(Trainer, "_train_epoch", crash_at_2)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "resumed", 2)
        monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
    else:
        run(tmp_path / "resumed", 1)
    first = torch.load(tmp_path / "resumed" / "training" / "checkpoint.pt", weights_only=True)
    assert first["epoch"] == 1
    run(tmp_path / "resumed", 2, resume=True)
    a = torch.load(tmp_path / "straight" / "training" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "training" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    _assert_same_state(a["model"], b["model"])
    _assert_same_state(a["loss"], b["loss"])
    assert not torch.equal(first["loss"]["W"], b["loss"]["W"])
    assert [r["val_accuracy"] for r in a["history"]] == [r["val_accuracy"] for r in b["history"]]


def _train_config(**kw: object) -> None:
    """Build the training settings (where pml: names and arguments are checked)."""
    _config(epochs=0, **kw)


def test_an_unknown_pml_loss_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"has no loss 'NoSuchLoss'; try one of: .*ArcFaceLoss"):
        _train_config(loss="pml:NoSuchLoss")


def test_an_unknown_pml_miner_names_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"has no miner 'NoSuchMiner'; try one of: .*TripletMargin"
    ):
        _train_config(loss="pml:MultiSimilarityLoss", miner="pml:NoSuchMiner")


def test_a_bad_pml_argument_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope"):
        train_model(
            _glyphs(4, 4),
            tmp_path / "m",
            model_spec=SMALL,
            config=_config(epochs=0, loss="pml:ArcFaceLoss", loss_args={"nope": 1}),
        )


def test_a_bad_pml_argument_is_refused_up_front_with_the_accepted_ones() -> None:
    """TrainConfig checks pml: arguments (pml.check) before anything is decoded or built."""
    with pytest.raises(ValueError, match=r"pml:ArcFaceLoss does not take nope; it takes: .*margin"):
        _train_config(loss="pml:ArcFaceLoss", loss_args={"nope": 1})
    with pytest.raises(ValueError, match=r"does not take nope; it takes: .*epsilon"):
        _train_config(
            loss="pml:MultiSimilarityLoss",
            miner="pml:MultiSimilarityMiner",
            miner_args={"nope": 1},
        )


def test_pml_settings_that_do_not_go_together_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"pml: miners go with pml: losses \(--loss pml:"):
        TrainConfig(loss="triplet", miner="pml:MultiSimilarityMiner")
    with pytest.raises(ValueError, match="sampling='balanced'"):
        TrainConfig(loss="pml:ArcFaceLoss", sampling="pairs", miner="all")
    with pytest.raises(ValueError, match="pml: losses only"):
        TrainConfig(loss="contrastive", miner="all", loss_args={"margin": 0.5})
    with pytest.raises(ValueError, match="pml: miners only"):
        TrainConfig(loss="pml:ArcFaceLoss", miner="all", miner_args={"epsilon": 0.1})


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--loss", "pml:NoSuchLoss"], "has no loss 'NoSuchLoss'"),
        (["--loss", "pml:ArcFaceLoss", "--loss-args", "{x"], "--loss-args must be a JSON object"),
        (["--loss", "pml:ArcFaceLoss", "--loss-args", "[1]"], "--loss-args must be a JSON object"),
        (["--loss", "pml:ArcFaceLoss", "--loss-args", '{"nope": 1}'], "nope"),
        (["--loss", "triplet", "--miner", "pml:BatchHardMiner"], "pml: miners go with pml: losses"),
        (["--loss", "contrastive", "--loss-args", '{"margin": 1}'], "pml: losses only"),
    ],
)
def test_cli_pml_mistakes_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    root = write_identity_folder(tmp_path / "ids", n_ids=4, per_id=4)
    argv = ["train", str(root), "--out", str(tmp_path / "m"), "--backbone", "small_cnn"]
    argv += ["--no-pretrained", "--image-size", "16", "--epochs", "0", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lookalike: error:") and expected in err, err
    assert len(err.strip().splitlines()) == 1


def test_cli_trains_a_pml_loss_with_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_identity_folder(tmp_path / "ids", n_ids=4, per_id=6)
    code = main(
        [
            "train", str(root), "--out", str(tmp_path / "m"), "--backbone", "small_cnn",
            "--no-pretrained", "--image-size", "16", "--loss", "pml:ArcFaceLoss",
            "--loss-args", '{"margin": 28.6}', "--miner", "pml:MultiSimilarityMiner",
            "--miner-args", '{"epsilon": 0.1}', "--epochs", "1", "--batch-size", "12",
            "--m-per-class", "3", "--steps-per-epoch", "2", "--no-augment",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = torch.load(tmp_path / "m" / "training" / "checkpoint.pt", weights_only=True)
    assert saved["config"]["loss_args"] == {"margin": 28.6}
    assert saved["config"]["miner_args"] == {"epsilon": 0.1}
    assert "W" in saved["loss"]


# -- what lookalike train prints -------------------------------------------------------------


def test_cli_train_prints_each_epoch_the_split_and_the_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_identity_folder(tmp_path / "ids", n_ids=4, per_id=6)
    code = main(
        [
            "train", str(root), "--out", str(tmp_path / "m"), "--backbone", "small_cnn",
            "--no-pretrained", "--image-size", "16", "--loss", "contrastive", "--epochs", "2",
            "--batch-size", "12", "--m-per-class", "3", "--steps-per-epoch", "2",
            "--no-augment", "--no-refit",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    epoch = re.compile(
        r"^epoch +(\d+)  train loss (    -   |\d+\.\d{4})  val accuracy (\d\.\d{4}) "
        r"\(95 % CI (\d\.\d{3})–(\d\.\d{3})\)  \d+\.\d s$"
    )
    epochs = [m for m in map(epoch.match, lines) if m]
    assert [int(m[1]) for m in epochs] == [0, 1, 2], captured.out
    assert epochs[0][2].strip() == "-" and epochs[1][2] != epochs[0][2]
    for m in epochs:
        assert float(m[4]) <= float(m[3]) + 5e-4 and float(m[3]) <= float(m[5]) + 5e-4
    split_lines = [line for line in lines if line.startswith("split by ")]
    assert split_lines == [
        "split by image (chosen from the data): 4 identities: validation holds out 20 % of "
        "each identity's images, so its figures cover these identities only, not new ones"
    ]
    summary = [line for line in lines if line.startswith("validation pair accuracy: ")]
    assert len(summary) == 1
    assert re.search(r"\(95 % CI [\d.]+–[\d.]+; 4 identities, \d+ pairs\)", summary[0]), summary
    assert "best epoch" in summary[0] and "cosine threshold" in summary[0]
    assert lines.index(split_lines[0]) > lines.index(epochs[-1][0])
    assert "warning: validation held out images of the training identities" in captured.err


# -- lookalike eval: worse than the frozen backbone ------------------------------------------


def _subject(name: str, auc_shift: float, n_way: float | None, ci95: float = 0.02) -> SubjectResult:
    """A subject whose pair scores separate by ``auc_shift``, with N-way accuracy ``n_way``."""
    rng = np.random.default_rng(0)
    labels = np.arange(400) % 2
    scores = rng.normal(0, 1, 400) + auc_shift * labels
    sub = SubjectResult(name)
    sub.verification["cosine"] = {"best": verify(scores, labels)}
    if n_way is not None:
        sub.episodes = EpisodeReport(5, 1, 400, n_way, ci95, 5, "cosine")
    return sub


def _eval_result(model: SubjectResult, frozen: SubjectResult | None) -> EvalResult:
    baselines = {} if frozen is None else {"frozen_backbone": frozen}
    return EvalResult(
        model=model,
        baselines=baselines,
        unavailable={},
        pairs=400,
        pair_source="seeded balanced pairs",
        images=60,
        identities=12,
        skipped={},
    )


def test_worse_than_frozen_fires_only_beyond_noise() -> None:
    good, bad = _subject("frozen_backbone", 2.0, 0.80), _subject("model", 0.5, 0.60)
    warning = _eval_result(bad, good).worse_than_frozen()
    assert warning is not None
    assert "worse than its frozen pretrained backbone" in warning
    assert "N-way accuracy 0.6000 vs 0.8000" in warning and "400 episodes" in warning
    assert "12 identities" in warning
    assert _eval_result(bad, good).to_dict()["warnings"] == [warning]
    # Within the two intervals combined (hypot(0.02, 0.02) = 0.028): no warning, even though
    # the model's AUC is much lower (episodes decide when they ran).
    close = _subject("model", 0.5, 0.78)
    assert _eval_result(close, good).worse_than_frozen() is None
    assert _eval_result(close, good).to_dict()["warnings"] == []
    assert _eval_result(_subject("model", 2.5, 0.9), good).worse_than_frozen() is None
    assert _eval_result(bad, None).worse_than_frozen() is None


def test_worse_than_frozen_without_episodes_compares_roc_auc() -> None:
    frozen = _subject("frozen_backbone", 2.0, None)
    worse = _eval_result(_subject("model", 1.0, None), frozen).worse_than_frozen()
    assert worse is not None and "ROC AUC" in worse and "on 400 pairs" in worse
    auc = frozen.summary()["roc_auc"]
    assert f"vs {auc:.4f}" in worse
    nearly = _subject("model", 1.97, None)
    assert frozen.summary()["roc_auc"] - nearly.summary()["roc_auc"] < 0.01
    assert _eval_result(nearly, frozen).worse_than_frozen() is None


def _colour_identities(root: Path, n_ids: int = 6, per_id: int = 5) -> Path:
    """32 px RGB identities (a 4×4 colour-block pattern each, with noise): easy for ImageNet
    features."""
    rng = np.random.default_rng(0)
    for k in range(n_ids):
        base = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1)))
        folder = root / f"id{k}"
        folder.mkdir(parents=True)
        for j in range(per_id):
            image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{j}.png")
    return root


def test_cli_eval_warns_when_the_model_is_worse_than_its_frozen_backbone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mobilenet_v2's pretrained weights ship offline; a collapsed copy of it is worse."""
    root = _colour_identities(tmp_path / "ids")
    intact = SiameseModel.create("mobilenet_v2", pretrained=True, input_size=32)
    intact.save(tmp_path / "intact")
    last_bn = [m for m in intact.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    with torch.no_grad():  # every image now gets the same embedding
        last_bn.weight.zero_()
        last_bn.bias.fill_(1.0)
    intact.save(tmp_path / "collapsed")
    argv = ["--out", str(tmp_path / "r"), "--episodes", "100", "--n-pairs", "200"]
    assert main(["eval", str(tmp_path / "collapsed"), str(root), *argv]) == 0
    captured = capsys.readouterr()
    assert "frozen backbone" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, captured.err
    assert "worse than its frozen pretrained backbone" in warnings[0]
    assert warnings[0].endswith("--backbone mobilenet_v2 --image-size 32")
    assert main(["eval", str(tmp_path / "intact"), str(root), *argv, "--json", "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["warnings"] == []
    assert "warning" not in captured.err


def test_folds_rotate_the_held_out_identities(tmp_path: Path) -> None:
    from lookalike.data.split import identity_folds

    data = _glyphs(12, 6)
    folds = identity_folds(data, 3, seed=0)
    held = [set(np.unique(val.labels).tolist()) for _, val in folds]
    assert all(len(h) == 4 for h in held)
    assert set().union(*held) == set(range(12))  # each identity held out exactly once
    assert not (held[0] & held[1]) and not (held[1] & held[2])
    messages: list[str] = []
    result = train_model(
        data,
        tmp_path / "m",
        model_spec=SMALL,
        config=_config(epochs=1, steps_per_epoch=2, val_pairs=100),
        refit=False,
        folds=3,
        notify=messages.append,
    )
    assert len(result.folds) == 3
    assert all(f.identities == 4 and f.low <= f.value <= f.high for f in result.folds)
    assert sum("fold" in m for m in messages) == 3
    assert (tmp_path / "m" / "training" / "fold-3" / "config.json").is_file()
    with pytest.raises(DataError, match="identities"):
        identity_folds(_glyphs(5, 3), 3)


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    data = _glyphs(8, 6)
    cfg = _config(epochs=1, steps_per_epoch=2, schedule="cosine")
    train_model(data, tmp_path / "m", model_spec=SMALL, config=cfg, refit=False)
    with pytest.raises(DataError, match="other settings"):
        train_model(
            data,
            tmp_path / "m",
            model_spec=SMALL,
            config=_config(epochs=1, steps_per_epoch=2, lr=1e-2, schedule="cosine"),
            refit=False,
            resume=True,
        )
