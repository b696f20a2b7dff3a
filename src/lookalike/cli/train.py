"""``lookalike train``, ``train-head`` and ``demo``: making a model."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.cli import options, ray_options
from lookalike.errors import LookalikeError

if TYPE_CHECKING:
    from lookalike.training.ray_train import RayPlan


def _widths(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise LookalikeError(
            f"--projection takes comma-separated widths like 128,128, got {text!r}"
        ) from exc


def _json_arg(text: str | None, flag: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LookalikeError(
            f"{flag} must be a JSON object, e.g. '{{\"margin\": 0.2}}': {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise LookalikeError(f"{flag} must be a JSON object, got {text!r}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    """``lookalike train``: train a model folder from an identity folder or a pairs CSV."""
    from lookalike.model.device import set_threads

    started = time.time()  # wall clock: rank 0 may report from another node (--ray)
    set_threads(args.threads)
    _check_processes(args)
    if args.ray is None:
        return _train(args, None, started)
    from lookalike.inference.ray_session import ray_session
    from lookalike.training.ray_train import plan_ray

    # Joined (or started) before anything is written: an unreachable cluster changes nothing.
    cpus = args.nproc * (args.threads or 1)  # sizes a local Ray (cpus + 1)
    with ray_session(ray_options.address(args), workers=cpus, verbose=args.ray_verbose):
        return _train(args, plan_ray(args.nproc, args.device, threads=args.threads), started)


def _train(args: argparse.Namespace, plan: RayPlan | None, started: float) -> int:
    """``lookalike train`` once the processes are planned (``plan``: on Ray, else ``None``)."""
    from lookalike.data.augment import Augment
    from lookalike.training.config import TrainConfig
    from lookalike.training.recipes import ModelSpec, load_dataset, train_model

    if not args.resume:  # a resumed run continues in its own folder
        options.claim_out_folder(args.out, overwrite=args.overwrite)
    if not 1 <= args.folds <= 20:
        raise LookalikeError(f"--folds must be between 1 and 20, got {args.folds}")
    source = args.data_dir if args.dataset == "mnist" and args.data_dir else args.data
    data = load_dataset(source, dataset=args.dataset)
    spec = ModelSpec(
        backbone=args.backbone,
        pretrained=False if args.no_pretrained else None,
        image_size=args.image_size,
        channels=args.channels,
        pooling=args.pooling,
        projection=_widths(args.projection),
    )
    miner = args.miner or ("semihard" if args.loss == "triplet" else "all")
    loss_args, miner_args = (
        _json_arg(args.loss_args, "--loss-args"),
        _json_arg(args.miner_args, "--miner-args"),
    )
    try:
        config = TrainConfig(
            loss=args.loss,
            sampling=args.sampling,
            miner=miner,
            margin=args.margin,
            distance=args.distance,
            epochs=args.epochs,
            batch_size=args.batch_size,
            m_per_class=args.m_per_class,
            steps_per_epoch=args.steps_per_epoch,
            lr=args.lr,
            backbone_lr=args.backbone_lr,
            train_fraction=args.train_fraction,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            patience=args.patience,
            seed=args.seed,
            augment=Augment.off() if args.no_augment else None,
            guard=not args.no_guard,
            loss_args=loss_args,
            miner_args=miner_args,
        )
    except ValueError as exc:
        raise LookalikeError(str(exc)) from exc
    settings = {
        "model_spec": spec,
        "config": config,
        "split": args.split,
        "val_fraction": args.val_split,
        "refit": args.refit,
        "start_from": args.model,
        "resume": args.resume,
        "device": args.device,
        "folds": args.folds,
    }
    if plan is not None:
        return _train_on_ray(args, plan, data, settings, started)
    if args.nproc > 1:
        return _train_processes(args, data, settings, started)
    try:
        result = train_model(
            data,
            args.out,
            progress=sys.stderr.isatty(),
            on_epoch=_print_epoch,
            notify=lambda message: print(message, file=sys.stderr, flush=True),
            **settings,
        )
    except ValueError as exc:  # settings that only the data can refute (e.g. pml arguments)
        raise LookalikeError(str(exc)) from exc
    except KeyboardInterrupt:
        return _interrupted(args)
    _report(result, args.out, started)
    return 0


def _report(result: Any, out: str, started: float) -> None:
    """The summary and the closing line of a training run (``started``: ``time.time()``)."""
    from lookalike._progress import done

    _print_summary(result, out)
    after = ", ".join(f"{k} {v:.1f} s" for k, v in result.phase_seconds.items())
    final = result.final
    validated = "" if final is None else f", validated on {final.pairs} pairs"
    done(
        f"train: {result.history[-1].epoch} epochs{validated}; after the epochs "
        f"{sum(result.phase_seconds.values()):.1f} s ({after}); total",
        time.time() - started,
    )


def _check_processes(args: argparse.Namespace) -> None:
    """``--nproc`` and ``--ray`` as they can be checked before any work (one line each).

    ``--ray`` needs ``--nproc``: the number of workers is a choice about the batch (each
    worker embeds ``--batch-size / N`` images), not something to guess from the cluster's
    size; ``--nproc 1 --ray`` trains in one Ray worker (e.g. on a cluster's GPU node).
    """
    ray_options.check(args)
    if args.ray is not None and args.nproc is None:
        raise LookalikeError(
            "--ray trains in --nproc N Ray workers: give --nproc (e.g. --nproc 2; "
            "--batch-size must be a multiple of it)"
        )
    args.nproc = args.nproc or 1
    cores = os.cpu_count() or 1
    if args.ray is None and args.nproc > cores:
        raise LookalikeError(
            f"--nproc must be at least 1 and at most {cores} ({cores} CPU cores; more "
            f"processes on a Ray cluster with --ray), got {args.nproc}"
        )
    if args.nproc > 1 or args.ray is not None:
        if args.refit or args.folds > 1:
            raise LookalikeError("--refit and --folds need one process: leave out --nproc")
        if args.sampling != "balanced" or args.batch_size % args.nproc:
            raise LookalikeError(
                f"--nproc {args.nproc} needs --sampling balanced and a --batch-size that is a "
                f"multiple of {args.nproc} (each process embeds its share of every batch)"
            )
    if args.ray is not None:  # the workers start elsewhere (another folder, another node)
        for name in ("out", "data_dir", "model"):
            if getattr(args, name, None):
                setattr(args, name, str(Path(getattr(args, name)).resolve()))
        if "://" not in args.data:
            args.data = str(Path(args.data).resolve())


def _train_processes(
    args: argparse.Namespace, data: Any, settings: dict[str, Any], started: float
) -> int:
    """``--nproc N``: train in N processes started here (DDP; gloo on CPU, NCCL with one
    GPU each)."""
    from torch.multiprocessing.spawn import ProcessRaisedException

    from lookalike.model.device import resolve_device
    from lookalike.training.distributed import launch

    cuda = resolve_device(args.device).type == "cuda"
    if cuda:
        import torch

        if args.nproc > torch.cuda.device_count():
            raise LookalikeError(
                f"--nproc {args.nproc} needs {args.nproc} GPUs; this machine has "
                f"{torch.cuda.device_count()}"
            )
    try:
        launch(args.nproc, _train_rank, data, args.out, settings, started, cuda, cuda=cuda)
    except ProcessRaisedException as exc:
        last = next((ln for ln in reversed(str(exc).splitlines()) if ln.strip()), "")
        raise LookalikeError(f"a training process failed: {last.strip()}") from exc
    except KeyboardInterrupt:
        return _interrupted(args)
    return 0


def _train_on_ray(
    args: argparse.Namespace, plan: RayPlan, data: Any, settings: dict[str, Any], started: float
) -> int:
    """``--nproc N --ray [ADDRESS]``: the same training, Ray Train's N workers as the processes
    (Ray connected by the caller)."""
    from lookalike.training.ray_train import launch_ray

    try:
        launch_ray(
            plan,
            _train_rank,
            data,
            args.out,
            settings,
            started,
            plan.use_gpu,
            args.threads,
            storage=Path(args.out) / "training",
        )
    except KeyboardInterrupt:
        return _interrupted(args)
    return 0


def _train_rank(
    world: Any,
    data: Any,
    out: str,
    settings: dict[str, Any],
    started: float,
    cuda: bool,
    threads: int | None = None,
) -> None:
    """One of ``--nproc`` training processes (on the GPU its launcher chose, with CUDA);
    rank 0 reports. ``threads``: torch's CPU threads here (``None``: the launcher's)."""
    from lookalike.model.device import set_threads
    from lookalike.training.recipes import train_model

    first = world.rank == 0
    set_threads(threads)
    if cuda:
        import torch

        settings = {**settings, "device": f"cuda:{torch.cuda.current_device()}"}
    result = train_model(
        data,
        out,
        progress=first and sys.stderr.isatty(),
        on_epoch=_print_epoch if first else None,
        notify=(lambda message: print(message, file=sys.stderr, flush=True)) if first else None,
        world=world,
        **settings,
    )
    if first:
        _report(result, out, started)


EXIT_INTERRUPTED = 130
"""The shell's code for a command ended by Ctrl-C (128 + SIGINT)."""


def _interrupted(args: argparse.Namespace) -> int:
    """After Ctrl-C: one line on stderr with the checkpoint and the command that resumes.

    Returns:
        :data:`EXIT_INTERRUPTED`.
    """
    import shlex

    checkpoint = Path(args.out) / "training" / "checkpoint.pt"
    if not checkpoint.is_file():
        print(
            "lookalike train: interrupted before the first epoch ended: no checkpoint to "
            "resume from, run the same command again",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    argv = getattr(args, "argv", None) or sys.argv[1:]
    command = [token for token in argv if token != "--overwrite"]
    if "--resume" not in command:
        command.append("--resume")
    print(
        f"lookalike train: interrupted; the last finished epoch is saved in {checkpoint}: "
        f"resume with: lookalike {shlex.join(command)}",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_INTERRUPTED


def _print_epoch(record: Any) -> None:
    """One line per epoch: loss, validation accuracy with its interval, time."""
    loss = "    -   " if record.train_loss is None else f"{record.train_loss:.4f}"
    ci = (
        ""
        if record.val_ci_low is None
        else f" (95 % CI {record.val_ci_low:.3f}–{record.val_ci_high:.3f})"
    )
    print(
        f"epoch {record.epoch:>3}  train loss {loss}  val accuracy {record.val_accuracy:.4f}"
        f"{ci}  {record.seconds:.1f} s",
        flush=True,
    )


def _print_summary(result: Any, out: str) -> None:
    """What training measured, each figure with its sample size and 95 % interval."""
    if result.split is not None:
        how = "chosen from the data" if result.split.chosen else "as asked"
        print(f"split by {result.split.kind} ({how}): {result.split.reason}")
    if result.guard is not None and result.guard.reason not in result.warnings:
        print(f"guard: {result.guard.reason}")
    if result.folds:
        values = [f.value for f in result.folds]
        each = ", ".join(f"{f.value:.3f}" for f in result.folds)
        print(
            f"{len(values)} folds of held-out identities (each "
            f"{result.folds[0].pairs:,} pairs): validation accuracy "
            f"{statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f} (sd; folds: {each})"
        )
    final = result.final
    metric = next(iter(result.model.thresholds), "cosine")
    threshold = result.model.thresholds.get(metric, float("nan"))
    print(
        f"validation pair accuracy: {final.describe(4)}; best epoch {result.best_epoch} of "
        f"{result.history[-1].epoch}; {metric} threshold {threshold:.4f}"
    )
    if result.refit:
        print(
            f"refit: trained again on all the data for {result.best_epoch} epochs "
            "(the validation figure above is that of the first run)"
        )
    # Same pairs, same identities: the model's interval (over identities) is theirs too; a
    # Wilson interval over pairs would pretend the pairs were independent.
    baselines = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in result.baselines.items())
    print(
        f"baselines on the same {final.pairs:,} validation pairs of {final.identities} "
        f"identities (intervals as wide as the model's): {baselines}"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"model folder: {out}  (history and plots in {Path(out) / 'training'})")


def cmd_train_head(args: argparse.Namespace) -> int:
    """``lookalike train-head``: few-shot pair head on a frozen model from labelled pairs."""
    from lookalike._progress import done
    from lookalike.data.pairs import PairList
    from lookalike.training.fewshot import train_head_on_pairs

    started = time.perf_counter()
    options.claim_out_folder(args.out, overwrite=args.overwrite)
    pairs = PairList.from_csv(args.pairs_csv)
    model = options.load_model(args)
    report = train_head_on_pairs(
        model,
        pairs.a,
        pairs.b,
        pairs.labels,
        holdout=args.holdout,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    model.provenance = {"how": f"few-shot pair head from {args.pairs_csv}"}
    model.metrics.update(
        {
            "head_train_accuracy": report.train_accuracy,
            "head_holdout_accuracy": report.holdout_accuracy,
        }
    )
    model.save(args.out, include_backbone=not args.reference_backbone)
    _print_head_report(report)
    print(f"model folder: {args.out}")
    images = len({*map(str, pairs.a), *map(str, pairs.b)})
    done(
        f"train-head: {len(pairs.labels)} pairs ({images} images), {args.steps} steps",
        time.perf_counter() - started,
    )
    return 0


def _print_head_report(report: Any) -> None:
    """Train and held-out accuracy of a few-shot head, with sample sizes and 95 % intervals.

    With few held-out pairs the interval is wide: 3 right of 4 is 0.75 (0.30-0.95), which
    says little; the line says so rather than letting 0.75 look like a measurement.
    """
    from lookalike.evaluation.report import proportion_text

    print(
        f"trained pair head on {report.n_train} pairs in {report.seconds:.2f} s: "
        f"train accuracy {report.train_accuracy:.4f} (on the pairs it learnt from)"
    )
    if report.holdout_accuracy is None:
        print("held-out accuracy: not measured (--holdout 0)")
        return
    n = report.n_holdout
    print(f"held-out accuracy: {proportion_text(report.holdout_accuracy, n, unit='pairs')}")
    if report.cosine_holdout_accuracy is not None:
        cosine = proportion_text(report.cosine_holdout_accuracy, n, unit="pairs")
        print(f"  plain cosine (threshold from the same training pairs): {cosine}")
    if n < 30:
        print(
            f"  only {n} held-out pairs: the interval above is what is known; "
            "label more pairs for a firmer figure"
        )


def cmd_demo(args: argparse.Namespace) -> int:
    """``lookalike demo``: seed 003's digit-pair Siamese network, trained and evaluated."""
    from lookalike.model.device import set_threads
    from lookalike.training.demo import run_demo

    set_threads(args.threads)
    result = run_demo(
        args.out, data_dir=args.data_dir, seed=args.seed, progress=sys.stderr.isatty()
    )
    from lookalike.evaluation.report import proportion

    print(f"pair accuracy: {result.pair_accuracy:.4f}")
    ci = proportion(result.pair_accuracy, result.test_pairs)
    within = "" if ci is None else f" (95 % CI {ci.low:.3f}–{ci.high:.3f})"
    print(
        f"  on {result.test_pairs} held-out test pairs of {result.dataset}{within}; cosine "
        f"threshold {result.threshold:.4f} calibrated on validation pairs"
    )
    print(
        f"  mean euclidean distance: same digit {result.mean_distance_same:.3f}, "
        f"different digits {result.mean_distance_different:.3f} (low means same)"
    )
    print(f"  best epoch {result.train.best_epoch}, wall time {result.seconds:.1f} s")
    print("files written:")
    for path in result.files:
        print(f"  {path}")
    print(f"try: lookalike compare A.png B.png --model {Path(args.out) / 'model'}")
    return 0


MAX_RAY_WORKERS = 4096
"""``--nproc`` with ``--ray``: at most this many Ray Train workers (without it, the cores)."""

LEARNING_RATE = options.float_in(0, 10, lo_open=True)
"""``--lr``: more than 0 and at most 10."""


def register(sub: Any) -> None:
    """Add ``train``, ``train-head`` and ``demo`` to the sub-command parsers."""
    p = sub.add_parser("train", help="train a model from an identity folder or a pairs CSV")
    p.add_argument(
        "data", metavar="DATA", help="identity folder (root/<identity>/<image>) or pairs CSV"
    )
    options.add_out(p, "MODEL_DIR", "the model folder to write", folder=True)
    options.add_overwrite(p)
    p.add_argument(
        "--dataset",
        default="auto",
        choices=["auto", "folder", "pairs", "mnist", "digits"],
        help="what DATA is (auto: a folder or a CSV, from the path)",
    )
    p.add_argument("--data-dir", help="folder of MNIST IDX files for --dataset mnist")
    p.add_argument(
        "--model", metavar="MODEL_DIR", help="train this model folder further (not --backbone)"
    )
    p.add_argument("--backbone", default="mobilenet_v2", help="a registered backbone")
    p.add_argument(
        "--no-pretrained", action="store_true", help="start from random backbone weights"
    )
    p.add_argument(
        "--image-size",
        type=options.image_size,
        metavar="PX",
        help=f"input size in pixels, {options.image_size.lo} to {options.image_size.hi} "
        "(default: the backbone's)",
    )
    p.add_argument(
        "--channels",
        type=options.int_in(1, 3),
        choices=[1, 3],
        help="1 (grey) or 3 (colour) input channels (default: the backbone's)",
    )
    p.add_argument(
        "--pooling",
        default="avg",
        choices=["avg", "gem", "max", "flatten"],
        help="how feature maps become a vector",
    )
    p.add_argument("--projection", metavar="W1,W2", help="projection MLP widths, e.g. 128,128")
    p.add_argument(
        "--loss",
        default="triplet",
        metavar="LOSS",
        help="contrastive, triplet, bce, or any pytorch-metric-learning loss: pml:ClassName",
    )
    p.add_argument(
        "--loss-args", metavar="JSON", help="arguments of a pml: loss, e.g. '{\"margin\": 0.2}'"
    )
    p.add_argument(
        "--sampling",
        default="balanced",
        choices=["balanced", "pairs", "triplets"],
        help="how training batches are drawn",
    )
    p.add_argument(
        "--miner",
        help="semihard|hard|all|all_active|random (triplet), all|hard (pairs), or pml:ClassName",
    )
    p.add_argument("--miner-args", metavar="JSON", help="arguments of a pml: miner")
    p.add_argument(
        "--margin",
        type=options.float_in(0, 10, lo_open=True),
        help="loss margin, more than 0 and at most 10 (default: 1.0 contrastive, 0.2 triplet)",
    )
    p.add_argument(
        "--distance",
        default="euclidean",
        choices=["euclidean", "cosine"],
        help="distance of the loss",
    )
    p.add_argument(
        "--epochs",
        type=options.int_in(0, 10000),
        help="0 to 10000 (default: 20 from scratch, 10 from pretrained weights)",
    )
    p.add_argument(
        "--batch-size",
        type=options.int_in(2, options.batch_size.hi),
        default=32,
        metavar="N",
        help=f"images per training batch, 2 to {options.batch_size.hi}",
    )
    p.add_argument(
        "--m-per-class",
        type=options.int_in(1, 1024),
        default=4,
        help="images per identity in a balanced batch, 1 to 1024",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=options.int_in(1, 1_000_000),
        help="batches per epoch, 1 to 1000000 (default: about one pass over the images)",
    )
    p.add_argument(
        "--lr", type=LEARNING_RATE, default=1e-3, help="learning rate, more than 0 and at most 10"
    )
    p.add_argument(
        "--backbone-lr",
        type=options.float_in(0, 10),
        help="learning rate of the backbone, 0 to 10 (default: --lr / 10 when pretrained)",
    )
    p.add_argument(
        "--train-fraction",
        type=options.probability,
        help="share of backbone layers that train, 0 to 1",
    )
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="optimiser")
    p.add_argument(
        "--weight-decay",
        type=options.float_in(0, 1),
        default=1e-4,
        help="L2 weight decay, 0 to 1",
    )
    p.add_argument(
        "--schedule",
        default="cosine",
        choices=["cosine", "step", "none"],
        help="learning-rate schedule",
    )
    p.add_argument(
        "--patience",
        type=options.int_in(1, 10000),
        default=5,
        help="early stopping patience (epochs), 1 to 10000",
    )
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--split",
        default="auto",
        choices=["auto", "identity", "image"],
        help="validation split: held-out identities or images (auto: chosen from the data)",
    )
    p.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after choosing the epoch, train again on all the data (default: off)",
    )
    p.add_argument(
        "--folds",
        type=options.int_in(1, 20),
        default=1,
        metavar="K",
        help="first train K times on rotated held-out identities and report the spread (1 to 20)",
    )
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="keep the fine-tuned model even when it does not beat the pretrained one",
    )
    p.add_argument(
        "--val-split",
        type=options.open_fraction,
        default=0.2,
        help="share held out for validation, more than 0 and less than 1",
    )
    p.add_argument("--seed", type=options.seed, default=0, help="random seed")
    p.add_argument(
        "--resume", action="store_true", help="continue from MODEL_DIR/training/checkpoint.pt"
    )
    cores = os.cpu_count() or 1
    p.add_argument(
        "--nproc",
        type=options.int_in(1, MAX_RAY_WORKERS),
        default=None,
        metavar="N",
        help=f"training processes (DDP: gloo on CPU, one GPU each with CUDA), 1 to {cores} "
        f"(the CPU cores), or to {MAX_RAY_WORKERS} with --ray; the batch is shared, not "
        "multiplied (default: 1)",
    )
    ray_options.add_ray(
        p,
        what="start the --nproc processes with Ray Train (one CPU or one GPU each)",
        workers=False,
    )
    options.add_runtime(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("train-head", help="few-shot pair head from 10-100 labelled pairs")
    p.add_argument("pairs_csv", metavar="PAIRS.csv", help="columns a,b,label (1/0, same/different)")
    options.add_out(p, "MODEL_DIR", "the model folder to write", folder=True)
    options.add_overwrite(p)
    p.add_argument(
        "--holdout",
        type=options.float_in(0, 1, hi_open=True),
        default=0.25,
        help="share of pairs held out for the report, at least 0 and less than 1",
    )
    p.add_argument("--steps", type=options.int_in(1, 100_000), default=300, help="training steps")
    p.add_argument(
        "--lr", type=LEARNING_RATE, default=1e-3, help="learning rate, more than 0 and at most 10"
    )
    p.add_argument("--seed", type=options.seed, default=0, help="random seed")
    p.add_argument(
        "--reference-backbone",
        action="store_true",
        help="store the pretrained backbone by name and sha256 instead of its weights",
    )
    options.add_model(p)
    options.add_runtime(p)
    p.set_defaults(handler=cmd_train_head)

    p = sub.add_parser("demo", help="train and evaluate seed 003's digit-pair network")
    options.add_out(
        p, "DIR", "where the model, plots and report go", folder=True, default="demo-output"
    )
    p.add_argument("--data-dir", metavar="DIR", help="MNIST IDX files instead of sklearn digits")
    p.add_argument("--seed", type=options.seed, default=0, help="random seed")
    options.add_runtime(p)
    p.set_defaults(handler=cmd_demo)
