"""What ``lookalike train`` produces, with its defaults, in four regimes (offline data only).

    python benchmarks/bench_quality.py [--work DIR] [--regimes closed,many,shifted,few,kinds]
                                       [--image-size 48] [--write]

Regimes (data from ``benchmarks/quality_data.py``: digits and glyphs rendered from the
fonts Debian packages ship; nothing is downloaded):

* ``closed``: the same 10 digit identities at train and test time, new images whose fonts
  were never trained on; ``small_cnn`` from scratch, trained with the defaults and with
  seed 003's ``--loss contrastive``.
* ``many``: open set with many identities, Omniglot-like: train on some characters of 32
  scripts, test on characters never seen; ``mobilenet_v2`` (ImageNet weights).
* ``shifted``: train on Latin/Greek/Cyrillic letters, test on CJK ideographs.
* ``few``: the shifted regime with only 8 training identities (the product-photo failure:
  a handful of categories, a model that looks better on validation and is worse elsewhere).
* ``kinds``: MobileNetV2 trained on the ``closed`` digits, then scored on photos.

Every pretrained regime also scores its models on 21 offline photos × 8 generated edits.

Every regime reports raw pixels, the frozen backbone (when there is one) and the model
``lookalike train DIR --out M [--backbone B --image-size S]`` wrote (a subprocess: the real
command, its wall time and peak RSS), plus, where the guard kept less than the fine-tuned
model, that fine-tuned model itself (``MODEL/training/unguarded``, from the same run), so the
guard's effect is visible. Test figures: ROC AUC of 4,000 seeded pairs with a 95 % interval
from a bootstrap over test identities; pair accuracy at the model's stored threshold (the
baselines have none: their best threshold on the test pairs, which flatters them); N-way
1-shot accuracy over 400 episodes with its 95 % interval over episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_data as qd
from lookalike.data.decode import decode_all, normalize
from lookalike.data.labelled import LabelledImages
from lookalike.data.pairs import make_pairs
from lookalike.metrics.bootstrap import identity_bootstrap, weighted_accuracy, weighted_auc
from lookalike.metrics.calibration import best_accuracy_threshold
from lookalike.metrics.distances import cosine_similarity
from lookalike.metrics.episodes import n_way_k_shot
from lookalike.model.network import SiameseModel

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Regime:
    name: str
    what: str
    backbone: str
    ways: int
    runs: tuple[tuple[str, tuple[str, ...]], ...]  # (row name, extra train flags)


REGIMES = {
    "closed": Regime(
        "closed",
        "closed set: 10 digits, 300 train / 100 test images each, test fonts unseen",
        "small_cnn",
        10,
        (
            ("lookalike train (defaults)", ()),
            ("--loss contrastive", ("--loss", "contrastive")),
            ("--refit", ("--refit",)),
        ),
    ),
    "many": Regime(
        "many",
        "open set, many identities: 300 train / 150 unseen test characters × 10 images",
        "mobilenet_v2",
        20,
        (("lookalike train (defaults)", ()),),
    ),
    "shifted": Regime(
        "shifted",
        "open set, shifted: 200 Latin/Greek/Cyrillic train → 150 CJK test characters × 10",
        "mobilenet_v2",
        20,
        (("lookalike train (defaults)", ()),),
    ),
    "kinds": Regime(
        "kinds",
        "another kind: MobileNetV2 trained on the 10 digits of `closed`, scored on photos",
        "mobilenet_v2",
        10,
        (("lookalike train (defaults)", ()),),
    ),
    "few": Regime(
        "few",
        "shifted, few identities: 8 Latin/Greek/Cyrillic letters × 60 → 150 CJK × 10",
        "mobilenet_v2",
        20,
        (("lookalike train (defaults)", ()),),
    ),
}


def make_data(regime: str, root: Path) -> Path:
    """Generate a regime's data once (``root/<regime>/{train,test}``)."""
    if regime == "kinds":
        return make_data("closed", root)
    out = root / regime
    if (out / "manifest.json").is_file():
        return out
    if regime == "closed":
        qd.digits_closed_set(out, seed=0, train_per_class=300, test_per_class=100, overwrite=True)
    elif regime == "many":
        qd.glyph_open_set(
            out, seed=0, n_train_chars=300, n_test_chars=150, per_char=10, overwrite=True
        )
    elif regime == "shifted":
        qd.glyph_shifted_set(
            out, seed=0, n_train_chars=200, n_test_chars=150, per_char=10, overwrite=True
        )
    else:
        qd.glyph_shifted_set(
            out, seed=0, n_train_chars=8, n_test_chars=150, per_char=60, overwrite=True
        )
    return out


def make_photo_edits(root: Path, per_photo: int = 8) -> Path:
    """Another kind of image entirely: the 21 offline photos, each one identity with
    ``per_photo - 1`` generated edits (crops, rotations, colour, overlays, JPEG)."""
    from PIL import Image

    from lookalike.dedup.calibrate import offline_photos
    from lookalike.dedup.edits import near_duplicates

    test = root / "test"
    if test.is_dir():
        return root
    for k, photo in enumerate(offline_photos()):
        folder = test / f"photo{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(photo)
        image.thumbnail((256, 256))
        image.save(folder / "0.png")
        for n, edit in enumerate(near_duplicates(image, per_photo - 1, seed=k), 1):
            edit.image.convert("RGB").save(folder / f"{n}.png")
    return root


def _ci_auc(scores: np.ndarray, labels: np.ndarray, ids: tuple[np.ndarray, np.ndarray]) -> str:
    ci = identity_bootstrap(scores, labels, ids, weighted_auc, rounds=300)
    return f"{ci.value:.3f} ({ci.low:.3f}–{ci.high:.3f})"


def measure(
    emb: np.ndarray, labels: np.ndarray, ways: int, threshold: float | None
) -> dict[str, str]:
    """Test figures of one embedding (N, D) of the test images."""
    i, j, y = make_pairs(labels, 4000, seed=1)
    scores = np.asarray(cosine_similarity(emb[i], emb[j]))
    ids = (labels[i], labels[j])
    cut = threshold if threshold is not None else best_accuracy_threshold(scores, y).value

    def acc(s: np.ndarray, yy: np.ndarray, w: np.ndarray) -> float:
        return weighted_accuracy(s, yy, w, cut)

    pair = identity_bootstrap(scores, y, ids, acc, rounds=300)
    episodes = n_way_k_shot(emb, labels, ways=ways, shots=1, episodes=400, seed=2)
    return {
        "auc": _ci_auc(scores, y, ids),
        "pair_acc": f"{pair.value:.3f} ({pair.low:.3f}–{pair.high:.3f})"
        + ("" if threshold is not None else " *"),
        "nway": f"{episodes.accuracy:.3f} ± {episodes.ci95:.3f}",
    }


def embed(model: SiameseModel, data: LabelledImages) -> tuple[np.ndarray, np.ndarray]:
    decoded = decode_all(data, model.preprocess)
    x = normalize(decoded.pixels, model.preprocess).numpy()
    return model.embed(x, batch_size=128), decoded.labels.numpy()


def raw_pixels(data: LabelledImages, size: int) -> tuple[np.ndarray, np.ndarray]:
    from lookalike.imaging.preprocess import Preprocess

    pre = Preprocess(input_size=(size, size), channels=1, mean=(0.5,), std=(0.5,))
    decoded = decode_all(data, pre)
    flat = normalize(decoded.pixels, pre).flatten(1).numpy()
    return flat, decoded.labels.numpy()


def train(data_dir: Path, out: Path, regime: Regime, size: int | None, flags: tuple[str, ...]):
    cmd = [sys.executable, "-m", "lookalike", "train", str(data_dir / "train"), "--out", str(out)]
    cmd += ["--backbone", regime.backbone]
    if size:
        cmd += ["--image-size", str(size)]
    cmd += list(flags)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    run = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
    )
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = max(usage.ru_maxrss, before) / 1024
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    return seconds, cpu, peak, run.stdout + run.stderr


def run_regime(regime: Regime, work: Path, size: int | None, reuse: bool) -> list[str]:
    data_dir = make_data(regime.name, work / "data")
    test = LabelledImages.from_folder(data_dir / "test")
    rows = []
    raw, labels = raw_pixels(test, 28)
    rows.append(("raw pixels", measure(raw, labels, regime.ways, None), "", ""))
    if regime.backbone != "small_cnn":
        frozen = SiameseModel.create(regime.backbone, input_size=size)
        emb, labels = embed(frozen, test)
        rows.append(("frozen backbone", measure(emb, labels, regime.ways, None), "", ""))
    log = []
    for name, flags in regime.runs:
        out = work / "models" / f"{regime.name}-{name.replace(' ', '_').strip('-()')}"
        costs = work / "models" / f"{out.name}.cost.json"
        if reuse and (out / "config.json").is_file():
            nan = float("nan")
            seconds, cpu, peak = json.loads(costs.read_text()) if costs.is_file() else (nan,) * 3
        else:
            seconds, cpu, peak, text = train(data_dir, out, regime, size, flags)
            costs.write_text(json.dumps([seconds, cpu, peak]))
            log.append(f"$ lookalike train ... {' '.join(flags)}\n{text}")
        model = SiameseModel.load(out)
        emb, labels = embed(model, test)
        threshold = model.thresholds.get("cosine")
        how = model.provenance.get("guard") or ""
        split = (model.provenance.get("split") or {}).get("kind", "")
        note = f"split {split}; {how}" if how else f"split {split}"
        rows.append(
            (
                name,
                measure(emb, labels, regime.ways, threshold),
                f"{seconds:.0f} s wall, {cpu / 60:.1f} CPU-min, {peak:.0f} MB",
                note,
            )
        )
        unguarded = out / "training" / "unguarded"
        if unguarded.is_dir():  # the fine-tuned model the guard set aside (same run)
            tuned = SiameseModel.load(unguarded)
            emb, labels = embed(tuned, test)
            figures = measure(emb, labels, regime.ways, tuned.thresholds.get("cosine"))
            rows.append(("fine-tuned, set aside by the guard", figures, "same run", ""))
    (work / f"{regime.name}.log").write_text("\n".join(log))
    if regime.backbone != "small_cnn":  # the same models on photos: a kind never trained on
        photos = LabelledImages.from_folder(make_photo_edits(work / "data" / "photos") / "test")
        frozen = SiameseModel.create(regime.backbone, input_size=size)
        emb, labels = embed(frozen, photos)
        rows.append(("*on photos:* frozen backbone", measure(emb, labels, 5, None), "", ""))
        for name, _ in regime.runs:
            out = work / "models" / f"{regime.name}-{name.replace(' ', '_').strip('-()')}"
            for what, folder in (("", out), (" (set aside)", out / "training" / "unguarded")):
                if folder.is_dir():
                    model = SiameseModel.load(folder)
                    emb, labels = embed(model, photos)
                    figures = measure(emb, labels, 5, model.thresholds.get("cosine"))
                    rows.append((f"*on photos:* {name}{what}", figures, "", ""))
    at = f" at {size} px" if size else ""
    lines = [
        f"### {regime.name}: {regime.what}",
        "",
        f"Backbone `{regime.backbone}`{at}; {regime.ways}-way 1-shot"
        + (
            "; rows *on photos* score the same models on 21 offline photos × 8 generated "
            "edits (5-way 1-shot), a kind of image none of them was trained on."
            if regime.backbone != "small_cnn"
            else "."
        ),
        "",
        f"| embedding | ROC AUC (95 % CI) | pair accuracy (95 % CI) | {regime.ways}-way 1-shot "
        "| train time, peak RSS | what train kept |",
        "|---|---|---|---|---|---|",
    ]
    for name, m, cost, note in rows:
        lines.append(f"| {name} | {m['auc']} | {m['pair_acc']} | {m['nway']} | {cost} | {note} |")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-quality"))
    parser.add_argument("--regimes", default="closed,many,shifted,few,kinds")
    parser.add_argument("--image-size", type=int, default=48, help="for the pretrained backbone")
    parser.add_argument(
        "--reuse", action="store_true", help="evaluate models already trained in --work again"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.regimes.split(",") if n.strip()]
    unknown = set(names) - set(REGIMES)
    if unknown:
        parser.error(f"unknown regimes {sorted(unknown)}; choose from {sorted(REGIMES)}")
    if not 16 <= args.image_size <= 512:
        parser.error("--image-size must be in 16..512")
    args.work.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        regime = REGIMES[name]
        size = None if regime.backbone == "small_cnn" else args.image_size
        section = run_regime(regime, args.work, size, args.reuse)
        print("\n".join(section), flush=True)
        (args.work / f"{name}.md").write_text("\n".join(section))
        out += section
    print(json.dumps({"regimes": names}))


if __name__ == "__main__":
    main()
