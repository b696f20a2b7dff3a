"""``lookalike index``, ``search`` and ``dedup``: a persistent index of a folder of images.

The index records which model built it (its :class:`~lookalike.inference.ModelSource`, in
the index database), so ``search``, ``dedup --index`` and ``serve --index`` load the same
model without being told; ``--model``/``--backbone`` override it, and an index built with
another model is refused by the index itself.

``index`` also takes an fsspec URI as its folder (``s3://bucket/prefix``, ``gs://…``,
``file:///abs``; :mod:`lookalike.index.uri_root`): ``search`` then prints each hit as its
URI, ``dedup --index`` reports groups (and never moves objects: ``--move-to`` is refused).

``index --verify`` hashes and embeds every file again and repairs what is wrong;
``index --rebuild`` recreates the index from the folder (the fix named when the index
database is damaged). Paths are printed with :func:`~lookalike.imaging.files.shown_path`, so
a file name that is not valid UTF-8 shows its odd bytes as ``\\xNN``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from lookalike.cli import options, ray_options
from lookalike.dedup.keep import KEEP_RULES
from lookalike.errors import DataError, IndexFolderError, LookalikeError
from lookalike.imaging.files import shown_path
from lookalike.inference.source import ModelSource


def _source(
    args: argparse.Namespace,
    index_dir: str | None = None,
    *,
    root: str | None = None,
    rebuild: bool = False,
) -> ModelSource:
    """The model: from the command line, else the one the index recorded.

    With ``rebuild``, an index whose record cannot be read (a damaged database) falls back
    to the command line's model, saying so on stderr.
    """
    if index_dir is not None and not options.model_named(args) and Path(index_dir).is_dir():
        from lookalike.index.index import Index

        try:
            recorded = Index.recorded_source(index_dir, root=root)
        except IndexFolderError:
            if not rebuild:
                raise
            recorded = None
            chosen = options.model_source(args).describe()
            print(
                f"note: {index_dir} does not say which model built it; rebuilding with "
                f"{chosen} (pass --model or --backbone to choose another)",
                file=sys.stderr,
            )
        if recorded is not None:
            return recorded
    return options.model_source(args)


def _embedder(
    args: argparse.Namespace,
    index_dir: str | None = None,
    *,
    root: str | None = None,
    rebuild: bool = False,
) -> Any:
    """The model as an engine, and where it comes from (see :func:`_source`)."""
    source = _source(args, index_dir, root=root, rebuild=rebuild)
    return options.load_embedder(args, source), source


def _model_key(embedder: Any) -> str:
    return str(embedder.key or embedder.name)


def cmd_index(args: argparse.Namespace) -> int:
    """``lookalike index``: create or update the index of a folder."""
    from lookalike.index.index import Index

    ray_options.check(args)
    root: Path | str = _index_root(args.dir, ray=args.ray is not None)
    embedder, source = _embedder(args, args.index, root=args.dir, rebuild=args.rebuild)
    settings: dict[str, Any] = {"kind": args.kind}
    if args.nprobe is not None:
        settings["nprobe"] = args.nprobe
    opener = Index.create if args.rebuild else Index.open_or_create
    store = args.store
    if args.rebuild:
        settings["overwrite"] = True
        store = store or Index.recorded_store(args.index)  # a rebuild keeps the store
    # Join Ray first: an unreachable cluster must not leave an empty index folder behind.
    with (
        ray_options.session(args),
        opener(
            args.index,
            root,
            model_key=_model_key(embedder),
            dim=embedder.embedding_dim,
            model_source=source,
            store=store,
            **settings,
        ) as index,
    ):
        report = index.update(
            embedder,
            include=args.include or None,
            exclude=args.exclude or None,
            batch_size=args.batch_size,
            progress=sys.stderr.isatty(),
            verify=args.verify,
            ray=ray_options.ray_options(args, source),
        )
        for path, reason in report.skipped:
            print(f"skipped {shown_path(path)}: {reason}", file=sys.stderr)
        if report.skipped:
            print(f"{len(report.skipped)} file(s) skipped", file=sys.stderr)
        for path in report.repaired:
            print(f"repaired {shown_path(path)}", file=sys.stderr)
        name = shown_path(args.index)
        where = "" if index.store == "faiss" else f" in {index.store}"
        print(f"{name}: {len(index)} images ({index.kind}{where}); {report.summary()}")
        engines = index.engines
        if "onnx-int8" in engines and len(engines) > 1:
            print(
                f"note: {name} now holds vectors from several engines ({', '.join(engines)}): "
                "int8 vectors differ from float32 ones by the agreement `lookalike export "
                "--int8` measured; for vectors of one precision, rebuild with one engine "
                "(--rebuild --engine ...)",
                file=sys.stderr,
            )
    return 0


def _index_root(given: str, *, ray: bool) -> Path | str:
    """The folder (or URI) to index, checked before any work.

    Raises:
        DataError: Not a folder; a URI whose fsspec package is missing, that cannot be
            reached or does not exist, or ``memory://`` with ``--ray``.
    """
    from lookalike.index import uri_root

    if not uri_root.is_uri(given):
        root = Path(given)
        if not root.is_dir():
            raise DataError(f"{shown_path(root)} is not a folder of images")
        return root
    uri = uri_root.normalise(given)
    uri_root.check(uri, ray=ray)
    if not uri_root.exists(uri):
        raise DataError(
            f"{given} does not exist or holds no objects (a folder or prefix of images)"
        )
    return uri


def _hits_json(hits: list[Any], index: Any) -> list[dict[str, Any]]:
    uri = isinstance(index.root, str)  # a URI root: each hit's URI too
    return [
        {
            "path": shown_path(h.path),
            "score": h.score,
            "id": h.id,
            "label": None if h.label is None else shown_path(h.label),
            **({"uri": shown_path(index.resolve(h.path))} if uri else {}),
        }
        for h in hits
    ]


def _grid_image(index: Any, path: str) -> Any:
    """What the grid draws for a hit: its file, or a URI's bytes (the URI when unreadable)."""
    from lookalike.errors import ImageError
    from lookalike.inference.uris import read_bytes

    where = index.resolve(path)
    if not isinstance(where, str):
        return where
    try:
        return read_bytes(where)
    except ImageError:
        return where


def cmd_search(args: argparse.Namespace) -> int:
    """``lookalike search``: the k closest indexed images to each query image."""
    from lookalike.index.index import Index
    from lookalike.inference.pipeline import embed_files

    if args.k < 1:
        raise LookalikeError(f"-k must be at least 1, got {args.k}")
    embedder, source = _embedder(args, args.index)
    with Index.open(args.index, model_key=_model_key(embedder), model_source=source) as index:
        embedded = embed_files(embedder, args.queries)
        if embedded.failures:
            path, reason = embedded.failures[0]
            raise LookalikeError(f"cannot read query image {shown_path(path)}: {reason}")
        results = index.search(embedded.embeddings, args.k)
        size = len(index)
        hits_json = [_hits_json(hits, index) for hits in results]
        shown = [[shown_path(_hit_name(index, h.path)) for h in hits] for hits in results]
        flagged = _query_warnings(embedder, embedded.embeddings, args.queries)
        if args.grid:
            from lookalike.viz.grids import plot_retrieval_grid

            rows = [
                [(_grid_image(index, h.path), h.path, h.score) for h in hits] for hits in results
            ]
            plot_retrieval_grid(args.queries, rows, args.grid)
    if args.json:
        payload = [
            {"query": shown_path(q), "hits": hits, "warnings": flagged.get(i, [])}
            for i, (q, hits) in enumerate(zip(args.queries, hits_json, strict=True))
        ]
        every = [w for i in sorted(flagged) for w in flagged[i]]
        print(json.dumps({"results": payload, "index_size": size, "warnings": every}))
        return 0
    sys.stdout.flush()
    for i in sorted(flagged):
        for warning in flagged[i]:
            print(f"warning: {warning}", file=sys.stderr)
    for query, hits, names in zip(args.queries, results, shown, strict=True):
        print(shown_path(query))
        for rank, (hit, name) in enumerate(zip(hits, names, strict=True), 1):
            print(f"  {rank:>3}. {hit.score:.4f}  {name}")
    if args.grid:
        print(f"grid: {args.grid}")
    return 0


def _hit_name(index: Any, path: str) -> str:
    """How a hit is printed: its relative path, or its URI under a URI root."""
    return str(index.resolve(path)) if isinstance(index.root, str) else path


def _query_warnings(embedder: Any, embeddings: Any, queries: list[str]) -> dict[int, list[str]]:
    """Out-of-domain warnings by query row (none for models without a domain record)."""
    from lookalike.inference.domain import flag_inputs

    flagged: dict[int, list[str]] = {}
    for row, warning in flag_inputs(embedder, embeddings, [shown_path(q) for q in queries]):
        flagged.setdefault(row, []).append(warning)
    return flagged


def _dedup_threshold(embedder: Any, given: float | None) -> tuple[float, str]:
    """The library's threshold policy; its warning (another model, no threshold) on stderr."""
    from lookalike.dedup.calibrate import dedup_threshold

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = dedup_threshold(embedder, given)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return chosen


def _dedup_groups(
    args: argparse.Namespace, embedder: Any, source: ModelSource, threshold: float
) -> tuple[Any, Path | str]:
    from lookalike.dedup.groups import (
        dedup_index,
        find_duplicates,
        read_choices,
        refuse_uri_moves,
    )
    from lookalike.imaging.files import iter_image_files
    from lookalike.index import uri_root
    from lookalike.index.index import Index
    from lookalike.inference.pipeline import embed_files

    choices = read_choices(args.choices) if args.choices else None
    if args.index:
        with Index.open(args.index, model_key=_model_key(embedder), model_source=source) as index:
            if args.move_to:  # before any work: objects are never moved
                refuse_uri_moves(index.root)
            if isinstance(index.root, str):  # the keep rule and --html read the objects
                uri_root.check(index.root)
            return dedup_index(index, threshold, keep=args.keep, choices=choices), index.root
    root = Path(args.dir)
    if not root.is_dir():
        raise DataError(f"{shown_path(root)} is not a folder of images")

    def unreadable(path: Path, reason: str) -> None:
        print(f"skipped {shown_path(path)}: {reason}", file=sys.stderr)

    paths = [str(p) for p in iter_image_files(root, on_error=unreadable)]
    if not paths:
        raise DataError(f"no image files under {shown_path(root)}")
    embedded = embed_files(embedder, paths, batch_size=args.batch_size, progress=True)
    for path, reason in embedded.failures:
        print(f"skipped {shown_path(path)}: {reason}", file=sys.stderr)
    rel = [str(Path(p).relative_to(root)) for p in embedded.paths]
    groups = find_duplicates(
        embedded.embeddings, threshold, paths=rel, root=root, keep=args.keep, choices=choices
    )
    return groups, root


def cmd_dedup(args: argparse.Namespace) -> int:
    """``lookalike dedup``: groups of near-duplicates, reported and optionally moved."""
    from lookalike.dedup.groups import manifest_path, move_duplicates

    if args.undo:
        return _undo(args)
    if bool(args.dir) == bool(args.index):
        raise LookalikeError("give a folder or --index INDEX_DIR (one of them)")
    if args.dir and "://" in args.dir:
        raise DataError(
            f"{args.dir}: dedup reads a URI through an index: lookalike index {args.dir} "
            "--index IDX, then lookalike dedup --index IDX"
        )
    embedder, model = _embedder(args, args.index)
    threshold, source = _dedup_threshold(embedder, args.threshold)
    groups, root = _dedup_groups(args, embedder, model, threshold)
    moves: list[tuple[Path, Path]] = []
    manifest = manifest_path(args.move_to) if args.move_to and args.yes else None
    if args.move_to:
        moves = move_duplicates(groups, root, args.move_to, dry_run=not args.yes, manifest=manifest)
    if args.html:
        from lookalike.dedup.report import write_dedup_html

        write_dedup_html(groups, root, args.html, threshold=threshold)
    if args.json:
        payload = {
            "threshold": threshold,
            "threshold_source": source,
            "groups": [
                {
                    "keep": shown_path(g.keep),
                    "keep_reason": g.reason,
                    "paths": [shown_path(p) for p in g.paths],
                    "scores": list(g.scores),
                }
                for g in groups
            ],
            "moves": [{"from": shown_path(a), "to": shown_path(b)} for a, b in moves],
            "dry_run": not args.yes,
            "keep_rule": args.keep,
            "manifest": None if manifest is None or not moves else shown_path(manifest),
        }
        print(json.dumps(payload))
        return 0
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["group", "path", "keep", "score"])
        for n, g in enumerate(groups):
            for k, (path, score) in enumerate(zip(g.paths, g.scores, strict=True)):
                writer.writerow([n, shown_path(path), int(k == 0), f"{score:.6f}"])
        return 0
    extra = sum(len(g) - 1 for g in groups)
    print(f"{len(groups)} group(s) of near-duplicates, {extra} image(s) beyond one per group")
    print(f"threshold {threshold:.4f} (cosine; {source})")
    for n, g in enumerate(groups, 1):
        print(f"group {n}: keep {shown_path(g.keep)} ({g.reason})")
        for path, score in zip(g.paths[1:], g.scores[1:], strict=True):
            print(f"    {score:.4f}  {shown_path(path)}")
    if args.move_to:
        verb = "moved" if args.yes else "would move (dry run; add --yes to move)"
        print(f"{verb} {len(moves)} file(s) to {shown_path(args.move_to)}")
        if manifest is not None and moves:
            print(f"every move is listed in {shown_path(manifest)}; undo them with:")
            print(f"    lookalike dedup --undo {shown_path(manifest)}")
    if args.html:
        print(f"report: {shown_path(args.html)}")
    return 0


def _undo(args: argparse.Namespace) -> int:
    """``lookalike dedup --undo MANIFEST``: put the moved files back."""
    from lookalike.dedup.groups import undo_moves

    if args.dir or args.index or args.move_to:
        raise LookalikeError("--undo MANIFEST takes no folder, --index or --move-to")
    result = undo_moves(args.undo, dry_run=not args.yes)
    if args.json:
        payload = {
            "restored": [{"from": shown_path(a), "to": shown_path(b)} for a, b in result.restored],
            "in_place": result.in_place,
            "problems": result.problems,
            "dry_run": not args.yes,
        }
        print(json.dumps(payload))
    else:
        verb = "restored" if args.yes else "would restore"
        dry = "" if args.yes else " (dry run; add --yes to restore)"
        print(f"{verb} {len(result.restored)} file(s); {result.in_place} already in place{dry}")
        for problem in result.problems:
            print(f"not restored: {problem}", file=sys.stderr)
    return 1 if result.problems else 0


def cmd_calibrate_dedup(args: argparse.Namespace) -> int:
    """``lookalike calibrate-dedup``: choose and store a model's near-duplicate threshold."""
    from lookalike._progress import done
    from lookalike.dedup.calibrate import (
        calibrate_dedup_threshold,
        folder_photos,
        offline_photos,
    )
    from lookalike.model.folder import update_config

    started = time.perf_counter()
    if not args.model:
        raise LookalikeError("calibrate-dedup stores the threshold in a model folder: --model DIR")
    embedder, _ = _embedder(args)

    def unreadable(path: str, reason: str) -> None:
        print(f"skipped {shown_path(path)}: {reason}", file=sys.stderr)

    photos = (
        folder_photos(args.images, limit=args.max_images, seed=args.seed, on_error=unreadable)
        if args.images
        else offline_photos()
    )
    result = calibrate_dedup_threshold(
        embedder,
        photos,
        edits_per_photo=args.edits,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    update_config(
        args.model,
        thresholds={"dedup": result.threshold},
        metrics={"threshold_criterion": "accuracy"},
    )
    _print_dedup_calibration(result, args.model, photos=len(photos))
    done(
        f"calibrate-dedup: {len(photos)} photos, {len(result.positive_scores)} edited copies, "
        f"{len(result.positive_scores) + len(result.negative_scores)} pairs scored",
        time.perf_counter() - started,
    )
    return 0


def _print_dedup_calibration(result: Any, model: str, *, photos: int) -> None:
    """The stored threshold, and its precision and recall with their sample sizes and
    95 % Wilson intervals (the edits of one photo are not independent: with few photos the
    true intervals are wider, which the line says)."""
    from lookalike.evaluation.report import proportion_text

    positives, negatives = result.positive_scores, result.negative_scores
    accepted = int((positives >= result.threshold).sum()) + int(
        (negatives >= result.threshold).sum()
    )
    print(f"dedup threshold {result.threshold:.4f} stored in {model}")
    print(
        f"  precision {proportion_text(result.precision, accepted, unit='pairs called duplicates')}"
    )
    print(f"  recall {proportion_text(result.recall, len(positives), unit='edited copies')}")
    print(
        f"  measured on {len(positives)} edited copies of {photos} photos and "
        f"{len(negatives)} pairs of distinct photos (copies of one photo move together: "
        "with few photos the true intervals are wider)"
    )


_STORE_HELP = (
    "where the vectors are searched: faiss (default for a new index: a file in the index "
    "folder), milvus-lite:PATH.db (an embedded Milvus in a local folder) or "
    "milvus://HOST:PORT/COLLECTION (a Milvus server; milvus+https:// for TLS; a token is read "
    "from $LOOKALIKE_MILVUS_TOKEN, never stored). Recorded in the index: search, dedup and "
    "serve find it; an existing index keeps its store unless --rebuild"
)


def _store_spec(text: str) -> str:
    """Check a ``--store`` spec (argparse: a bad one is a usage error, exit 2)."""
    from lookalike.index.backend import StoreSpecError, parse_store

    try:
        parse_store(text)
    except StoreSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def register(sub: Any) -> None:
    """Add ``index``, ``search``, ``dedup`` and ``calibrate-dedup``."""

    def common(p: argparse.ArgumentParser) -> None:
        options.add_model(p)
        options.add_engine(p)
        options.add_runtime(p)
        options.add_batch_size(p)

    p = sub.add_parser("index", help="create or update a persistent index of a folder")
    p.add_argument(
        "dir",
        metavar="DIR",
        help="folder of images (searched recursively), or an fsspec URI (s3://bucket/prefix, "
        "gs://bucket/prefix, file:///abs/folder; s3fs or gcsfs installed)",
    )
    p.add_argument(
        "--index",
        required=True,
        type=options.output_folder,
        metavar="INDEX_DIR",
        help="the index folder (created if missing)",
    )
    p.add_argument("--include", action="append", metavar="GLOB", help="e.g. '*.jpg' (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="e.g. 'tmp/*' (repeatable)")
    repair = p.add_mutually_exclusive_group()
    repair.add_argument(
        "--verify",
        action="store_true",
        help="hash and embed every file again and repair what is wrong (as slow as a first run)",
    )
    repair.add_argument(
        "--rebuild",
        action="store_true",
        help="recreate the index from the folder (e.g. when its database is damaged)",
    )
    p.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "flat", "ivf", "ivf_sq8", "hnsw"],
        help="the vector structure (auto: chosen by the collection's size); on Milvus the "
        "index type: flat FLAT, ivf IVF_FLAT, ivf_sq8 IVF_SQ8, hnsw HNSW, auto FLAT on "
        "milvus-lite and HNSW on a server",
    )
    p.add_argument(
        "--nprobe",
        type=options.int_in(1, 65536),
        metavar="N",
        help="IVF lists scanned per query, 1 to 65536 (default: the index's)",
    )
    p.add_argument("--store", type=_store_spec, metavar="SPEC", help=_STORE_HELP)
    common(p)
    ray_options.add_ray(p)
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("search", help="the closest indexed images to query images")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="query images")
    p.add_argument("--index", required=True, metavar="INDEX_DIR", help="the index folder")
    p.add_argument(
        "-k", type=options.int_in(1, 10000), default=10, help="hits per query, 1 to 10000"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--grid", type=options.output_file, metavar="PNG", help="write the closest-images figure"
    )
    common(p)
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("dedup", help="find (and optionally move) groups of near-duplicates")
    p.add_argument("dir", metavar="DIR", nargs="?", help="folder of images")
    p.add_argument("--index", metavar="INDEX_DIR", help="use an index instead of a folder")
    p.add_argument(
        "--threshold",
        type=options.cosine,
        help="cosine threshold, -1 to 1 (default: the model's)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--csv", action="store_true", help="print the groups as CSV")
    p.add_argument(
        "--html", type=options.output_file, metavar="REPORT", help="write a contact-sheet report"
    )
    p.add_argument(
        "--move-to",
        type=options.output_folder,
        metavar="DIR",
        help="move all but one image per group here",
    )
    p.add_argument(
        "--yes", action="store_true", help="really move or restore (otherwise a dry run)"
    )
    p.add_argument(
        "--keep",
        choices=KEEP_RULES,
        default="original",
        help="which copy of each group to keep: original (no overlay or border, most pixels, "
        "best JPEG quality, earliest date, oldest file), largest, oldest, newest, "
        "shortest-path (default: %(default)s)",
    )
    p.add_argument(
        "--undo",
        metavar="MANIFEST",
        help="put back the files a dedup --move-to --yes moved (the manifest it printed)",
    )
    p.add_argument(
        "--choices",
        metavar="JSON",
        help="the copies to keep as chosen in the --html report (its Save choices file)",
    )
    common(p)
    p.set_defaults(handler=cmd_dedup)

    p = sub.add_parser("calibrate-dedup", help="store a model's near-duplicate threshold")
    p.add_argument(
        "--edits", type=options.int_in(1, 100), default=8, help="edited copies per photo, 1 to 100"
    )
    p.add_argument("--seed", type=options.seed, default=0, help="seed of the edits")
    p.add_argument(
        "--images",
        metavar="DIR",
        help="calibrate on your own distinct photos (no near duplicates among them) "
        "instead of the 21 that ship offline",
    )
    p.add_argument(
        "--max-images",
        type=options.int_in(2, 5000),
        default=200,
        help="photos of --images used, sampled by --seed when there are more, 2 to 5000",
    )
    common(p)
    p.set_defaults(handler=cmd_calibrate_dedup)
