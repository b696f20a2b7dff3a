"""``lookalike eval``: measure a model (and its baselines), write a report, optionally calibrate."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.cli import options
from lookalike.errors import DataError, LookalikeError

if TYPE_CHECKING:
    from lookalike.data.labelled import LabelledImages


def _data(args: argparse.Namespace) -> LabelledImages | None:
    """The identity-labelled images to evaluate on (MNIST's test split), ``None`` for none."""
    from lookalike.data.labelled import LabelledImages
    from lookalike.training.recipes import load_dataset

    source = args.data
    if args.dataset == "mnist":
        source = args.data_dir or args.data
        if not source:
            raise DataError("--dataset mnist needs --data-dir DIR (the folder of IDX files)")
    elif args.dataset == "folder":
        if source is None:
            return None
        if Path(source).suffix.lower() == ".csv":
            raise DataError(f"{source} is a CSV: pass labelled pairs with --pairs {source}")
    data = load_dataset(source or "", dataset=args.dataset, split="test")
    assert isinstance(data, LabelledImages)  # a folder, MNIST or digits: never a PairList
    return data


def _is_model_folder(path: str) -> bool:
    return (Path(path) / "config.json").is_file()


def _resolve_model(args: argparse.Namespace) -> None:
    """Sort the positionals into ``args.model`` and ``args.data``.

    ``eval DATA --model DIR`` (or ``--backbone NAME``) is the form every command shares;
    the older ``eval MODEL DATA`` keeps working: with two positionals the first is the
    model, and a lone positional that is a model folder (it holds ``config.json``) is the
    model too (``eval MODEL --pairs CSV``). Without any model, the default backbone is
    evaluated.

    Raises:
        LookalikeError: A model given both as a positional and as an option.
    """
    first, second = args.first, args.second
    named = bool(args.model or args.backbone)
    if second is not None:
        if named:
            raise LookalikeError(
                f"the model is given twice ({first} and "
                f"{'--model' if args.model else '--backbone'}): use eval DATA --model DIR"
            )
        args.model, args.data = first, second
    elif first is not None and not named and _is_model_folder(first):
        args.model, args.data = first, None
    else:
        args.data = first


def _model_name(source: Any) -> str:
    return str(source.folder or source.backbone or "the default backbone")


def cmd_eval(args: argparse.Namespace) -> int:
    """``lookalike eval``: verification, retrieval and N-way K-shot, beside the baselines."""
    from lookalike._progress import Phases, done
    from lookalike.data.pairs import PairList
    from lookalike.evaluation.evaluate import (
        EvalConfig,
        calibrated_thresholds,
        evaluate,
        save_thresholds,
    )
    from lookalike.evaluation.report import intervals, write_report
    from lookalike.model.device import set_threads
    from lookalike.model.folder import read_config
    from lookalike.viz.maps import require_method

    started = time.perf_counter()
    require_method(args.map)  # before minutes of evaluation, not after
    _resolve_model(args)
    options.claim_out_folder(args.out, overwrite=args.overwrite)
    set_threads(args.threads)
    source = options.model_source(args)
    if source.folder is not None:
        read_config(source.folder)  # a clear error before anything heavy when not a folder
    elif args.calibrate:
        raise LookalikeError(
            "--calibrate stores thresholds in a model folder: give --model DIR "
            "(a backbone has no folder to store them in)"
        )
    if args.criterion == "far" and args.far is None:
        raise LookalikeError("--criterion far needs --far RATE, e.g. --far 1e-3")
    if args.far is not None and args.criterion != "far":
        raise LookalikeError("--far applies only with --criterion far")
    try:
        config = EvalConfig(
            pairs=args.n_pairs,
            ways=args.ways,
            shots=args.shots,
            episodes=args.episodes,
            seed=args.seed,
            baselines=not args.no_baselines,
            criterion=args.criterion,
            far=args.far,
            frozen_backbone=args.frozen_backbone,
        )
    except ValueError as exc:
        raise LookalikeError(str(exc)) from exc
    data = _data(args)
    pairs = PairList.from_csv(args.pairs) if args.pairs else None
    if data is None and pairs is None:
        raise DataError("give DATA (an identity folder, or --dataset digits|mnist) or --pairs CSV")
    model = options.load_model(args, source)
    progress = sys.stderr.isatty()
    result = evaluate(model, data, pairs=pairs, config=config, progress=progress)
    with Phases("eval", 1, progress=progress) as phases:
        phases.start("writing the report (plots, map)")
        files = write_report(
            result, args.out, title=f"lookalike eval of {_model_name(source)}", map_method=args.map
        )
    calibrated = None
    if args.calibrate and source.folder is not None:
        calibrated = calibrated_thresholds(result, config)
        save_thresholds(source.folder, calibrated, criterion=args.criterion)
    episodes = result.model.episodes.episodes if result.model.episodes else 0
    done(
        f"eval: the model and {len(result.baselines)} baseline(s) on {result.pairs} pairs, "
        f"{result.images} images, {episodes} episodes; report {len(files)} files",
        time.perf_counter() - started,
    )
    if args.json:
        report = {**result.to_dict(), "intervals": intervals(result)}
        if calibrated is not None:
            report["calibrated_thresholds"] = calibrated
        print(json.dumps(report))
        return 0
    _print_summary(result, calibrated, args)
    print(f"report: {Path(args.out) / 'report.md'} ({len(files)} files)")
    warning = result.worse_than_frozen()
    if warning is not None:
        backbone = model.backbone_name if model.backbone_name != "custom" else "mobilenet_v2"
        size = model.preprocess.input_size[0]
        print(
            f"warning: {warning}; to use the backbone instead: lookalike compare A B "
            f"--backbone {backbone} --image-size {size}",
            file=sys.stderr,
        )
    return 0


def _print_summary(
    result: Any, calibrated: dict[str, float] | None, args: argparse.Namespace
) -> None:
    """The headline figures, each with its sample size and 95 % interval (see report.md)."""
    from lookalike.evaluation.report import (
        auc_interval,
        interval_text,
        proportion_text,
        tar_at_far_text,
    )

    def show(name: str, sub: Any) -> None:
        s = sub.summary()
        print(f"{name}:")
        if s["roc_auc"] is not None:
            head = sub.headline()
            n = head.positives + head.negatives
            metric = s["metric"]
            auc = auc_interval(
                sub.pair_scores[metric], sub.pair_labels, higher_is_same=head.higher_is_same
            )
            print(f"  ROC AUC {interval_text(auc)}  EER {s['eer']:.4f}  ({metric}, {n:,} pairs)")
            print(
                f"  accuracy {proportion_text(s['accuracy'], n, unit='pairs')} "
                f"@ {metric} {s['threshold']:.4f} ({s['threshold_source']})"
            )
            for far in head.tar_at_far:
                print(f"  TAR @ FAR {far} {tar_at_far_text(head, far)}")
        if s["precision_at_1"] is not None:
            queries = sub.retrieval.queries
            print(
                f"  P@1 {proportion_text(s['precision_at_1'], queries, unit='queries')}  "
                f"MAP@R {s['map_at_r']:.4f}"
            )
        if s["n_way_accuracy"] is not None:
            print(
                f"  {args.ways}-way {args.shots}-shot {s['n_way_accuracy']:.4f} "
                f"± {s['n_way_ci95']:.4f} (95 % CI, {sub.episodes.episodes} episodes)"
            )

    print(
        f"{result.pairs} pairs ({result.pair_source}), {result.images} images, "
        f"{result.identities} identities"
    )
    show("model", result.model)
    for name, sub in result.baselines.items():
        show(name.replace("_", " "), sub)
    for name, reason in result.unavailable.items():
        print(f"{name.replace('_', ' ')}: not measured ({reason})")
    if result.skipped:
        print(f"warning: {len(result.skipped)} unreadable image(s) skipped", file=sys.stderr)
    if calibrated is not None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in calibrated.items())
        print(
            f"calibrated thresholds ({args.criterion}) on {result.pairs:,} pairs written to "
            f"{args.model}: {shown}"
        )


def register(sub: Any) -> None:
    """Add ``eval`` to the sub-command parsers."""
    p = sub.add_parser("eval", help="measure a model beside raw pixels and the frozen backbone")
    p.add_argument(
        "first",
        metavar="DATA",
        nargs="?",
        help="identity folder (root/<identity>/<image>); the older form MODEL DATA still works",
    )
    p.add_argument("second", nargs="?", help=argparse.SUPPRESS)
    p.add_argument(
        "--dataset",
        default="folder",
        choices=["folder", "mnist", "digits"],
        help="what DATA is: an identity folder, MNIST's test split, or sklearn's digits",
    )
    p.add_argument("--data-dir", metavar="DIR", help="MNIST IDX files for --dataset mnist")
    p.add_argument("--pairs", metavar="CSV", help="labelled pairs a,b,label for verification")
    p.add_argument(
        "--n-pairs",
        type=options.int_in(2, 1_000_000),
        default=2000,
        help="pairs drawn from DATA without --pairs, 2 to 1000000",
    )
    p.add_argument(
        "--ways", type=options.int_in(2, 1000), default=5, help="N of N-way K-shot, 2 to 1000"
    )
    p.add_argument(
        "--shots", type=options.int_in(1, 1000), default=1, help="K of N-way K-shot, 1 to 1000"
    )
    p.add_argument(
        "--episodes",
        type=options.int_in(0, 1_000_000),
        default=400,
        help="N-way K-shot episodes, 0 (skip) to 1000000",
    )
    options.add_out(p, "REPORT_DIR", "the report folder to write", folder=True)
    options.add_overwrite(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--calibrate", action="store_true", help="store thresholds chosen on these pairs"
    )
    p.add_argument(
        "--criterion",
        default="accuracy",
        choices=["accuracy", "f1", "far"],
        help="how --calibrate chooses thresholds",
    )
    p.add_argument(
        "--far",
        type=options.open_fraction,
        help="target false-accept rate for --criterion far, more than 0 and less than 1",
    )
    p.add_argument(
        "--map", default="pca", choices=["pca", "tsne", "umap"], help="projection of the map"
    )
    p.add_argument(
        "--no-baselines", action="store_true", help="skip the raw-pixel and backbone baselines"
    )
    p.add_argument(
        "--frozen-backbone", metavar="NAME", help="pretrained backbone of the frozen baseline"
    )
    p.add_argument("--seed", type=options.seed, default=0, help="seed of pairs and episodes")
    options.add_model(p)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_eval)
