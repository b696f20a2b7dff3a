"""``lookalike export MODEL --web OUT_DIR``: the page of ``lookalike serve``, with no server.

The site is the same front end as ``lookalike serve`` (``lookalike/server/static``: one copy
of the page's code), switched to its in-browser back end (``<meta name="lookalike-api"
content="local">``): ONNX Runtime Web runs the embedding network in WebAssembly, TensorFlow.js
trains seed 000's pair head. Everything it needs is inside OUT_DIR, every URL is relative and
there are no server routes, so any static file server works, offline, and so does GitHub
Pages::

    OUT_DIR/
      index.html          the page (server/static/index.html, back end "local")
      site.json           the model: name, key, preprocessing, embedding size, thresholds,
                          its ONNX file and optional head file (see :func:`site_description`)
      model/model.onnx    the embedding network (lookalike.inference.standalone)
      model/head.safetensors   the model's pair head as a head file, when it has one
      static/             app.js, api-local.js, pixels.js, headfile.js, app.css, ...
      static/vendor/      ort.wasm.min.js + ort-wasm-simd-threaded.{mjs,wasm} (onnxruntime-web),
                          tf.min.js (@tensorflow/tfjs), NOTICE.txt (their licences)
      .nojekyll           GitHub Pages: serve the files as they are

The two npm packages are pinned in ``web/package.json`` and ``web/package-lock.json`` and
installed at set-up time (``bash scripts/dev env`` runs ``npm ci`` into ``web/node_modules``);
``$LOOKALIKE_WEB_VENDOR`` may name another ``node_modules`` folder holding the same versions.
Nothing is downloaded here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike._io import atomic_write_bytes, atomic_write_json
from lookalike._version import __version__
from lookalike.errors import ExportError
from lookalike.model.head_file import HeadFile, linear_names

if TYPE_CHECKING:
    from lookalike.inference.onnx_engine import NumpyPairHead
    from lookalike.inference.source import ModelSource
    from lookalike.model.domain import DomainRecord

__all__ = [
    "PAGE_FILES",
    "SITE_FORMAT",
    "VENDOR_FILES",
    "VENDOR_VERSIONS",
    "build_site",
    "find_vendor",
]

SITE_FORMAT = "lookalike.site/1"
STATIC_DIR = Path(__file__).resolve().parents[1] / "server" / "static"
PAGE_FILES = (
    "app.js",
    "app.css",
    "favicon.svg",
    "api-server.js",
    "api-local.js",
    "pixels.js",
    "headfile.js",
)
"""The front end's files copied from ``lookalike/server/static`` (index.html is rewritten)."""

VENDOR_VERSIONS = {"onnxruntime-web": "1.30.0", "@tensorflow/tfjs": "4.22.0"}
"""The npm packages the page runs on, as pinned in ``web/package.json``."""

VENDOR_FILES = {
    "ort.wasm.min.js": "onnxruntime-web/dist/ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs": "onnxruntime-web/dist/ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
    "tf.min.js": "@tensorflow/tfjs/dist/tf.min.js",
}
"""File in ``static/vendor/`` → its path under ``node_modules``."""

_MODE_SERVER = '<meta name="lookalike-api" content="server">'
_MODE_LOCAL = '<meta name="lookalike-api" content="local">'
_NOTICE = """\
The page's libraries, copied unchanged from npm by lookalike export --web:

onnxruntime-web {ort}  (ort.wasm.min.js, ort-wasm-simd-threaded.mjs, ort-wasm-simd-threaded.wasm)
  MIT License, Copyright (c) Microsoft Corporation. https://github.com/microsoft/onnxruntime

@tensorflow/tfjs {tfjs}  (tf.min.js)
  Apache License 2.0, Copyright Google LLC. https://github.com/tensorflow/tfjs
"""


def _repo_node_modules() -> Path:
    """``web/node_modules`` of the clone this package runs from (an editable install)."""
    return Path(__file__).resolve().parents[3] / "web" / "node_modules"


def find_vendor(node_modules: str | os.PathLike[str] | None = None) -> Path:
    """The ``node_modules`` folder holding the pinned onnxruntime-web and TensorFlow.js.

    Args:
        node_modules: Where to look; ``None``: ``$LOOKALIKE_WEB_VENDOR``, else this clone's
            ``web/node_modules``.

    Returns:
        The folder.

    Raises:
        ExportError: The packages are missing or not the pinned versions (the message says
            how to install them).
    """
    chosen = node_modules or os.environ.get("LOOKALIKE_WEB_VENDOR") or _repo_node_modules()
    folder = Path(chosen)
    how = (
        "the static page needs onnxruntime-web and @tensorflow/tfjs from npm: run "
        "`bash scripts/dev env` (npm ci in web/) or `npm ci --prefix web` in the lookalike "
        "clone, or set LOOKALIKE_WEB_VENDOR to a node_modules folder holding "
        + " and ".join(f"{name} {version}" for name, version in VENDOR_VERSIONS.items())
    )
    for name, version in VENDOR_VERSIONS.items():
        manifest = folder / name / "package.json"
        try:
            found = json.loads(manifest.read_text(encoding="utf-8")).get("version")
        except (OSError, ValueError):
            raise ExportError(f"{how} ({manifest} is missing)") from None
        if found != version:
            raise ExportError(f"{how} ({name} {found} is installed in {folder})")
    missing = [rel for rel in VENDOR_FILES.values() if not (folder / rel).is_file()]
    if missing:
        raise ExportError(f"{how} ({folder / missing[0]} is missing)")
    return folder


def _head_file(
    head: NumpyPairHead, config: Mapping[str, Any], key: str, threshold: float
) -> HeadFile:
    """The model's own pair head (NumPy, from the export) as a head file."""
    hidden = tuple(int(h) for h in config.get("hidden", (256, 64)))
    dropout = float(config.get("dropout", 0.25))
    tensors = {}
    for name, (weight_t, bias) in zip(linear_names(hidden, dropout), head.layers, strict=True):
        tensors[f"{name}.weight"] = weight_t.T.copy()
        tensors[f"{name}.bias"] = bias
    return HeadFile(
        model_key=key,
        embedding_dim=int(head.layers[0][0].shape[0]),
        hidden=hidden,
        dropout=dropout,
        tensors=tensors,
        threshold=threshold,
        how="the model's own pair head",
    )


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "site.json").is_file():
        raise ExportError(f"{out} is not empty and holds no lookalike site: choose a new folder")


def build_site(
    source: ModelSource | str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    node_modules: str | os.PathLike[str] | None = None,
) -> Path:
    """Build the static in-browser page of a model (module notes).

    Args:
        source: The model: a :class:`~lookalike.inference.ModelSource`, a model folder, or
            ``None`` (the default backbone).
        out_dir: The site's folder: new, empty, or an earlier site (its files are replaced).
        node_modules: Where the npm packages are (see :func:`find_vendor`).

    Returns:
        ``out_dir``.

    Raises:
        ExportError: The npm packages are missing, the model has no key (random weights: save
            it as a model folder first), onnx/onnxruntime are missing, or ``out_dir`` is a
            file or a non-empty folder that is not a site.
        LookalikeError: A bad model folder or unavailable weights.
    """
    from lookalike.inference.comparison import near_duplicate_threshold
    from lookalike.inference.source import ModelSource
    from lookalike.inference.standalone import standalone_export
    from lookalike.model.folder import read_card

    vendor = find_vendor(node_modules)
    out = Path(out_dir)
    _check_out_dir(out)
    source = ModelSource.of(source)
    export = standalone_export(source, head_file="")
    embedder = export.embedder
    if not embedder.key:
        raise ExportError(
            "this model has no model key (random weights?), so a head trained on the page "
            "could not be matched to it: save it as a model folder and export that"
        )
    card = read_card(source.folder) if source.folder is not None else None
    backbone = card.backbone if card is not None else source.backbone_name
    name = Path(source.folder).name if source.folder is not None else backbone
    head_rel = None
    if embedder.head is not None:
        head_rel = "model/head.safetensors"
        threshold = embedder.thresholds.get("probability", 0.5)
        head = _head_file(
            embedder.head, (card.head if card else None) or {}, embedder.key, threshold
        )
        atomic_write_bytes(out / head_rel, head.to_bytes(), mode=0o644)
    atomic_write_bytes(out / "model" / "model.onnx", export.model, mode=0o644)
    pre = embedder.preprocess
    height, width = pre.input_size
    thresholds = {k: v for k, v in embedder.thresholds.items() if k != "probability"}
    near = near_duplicate_threshold(embedder)
    if near is not None:  # the page's verdict without a task threshold (as compare's)
        thresholds["near_duplicate"] = near[0]
    record = card.domain if card is not None and source.image_size is None else None
    atomic_write_json(
        out / "site.json",
        {
            "format": SITE_FORMAT,
            "name": name,
            "backbone": backbone,
            "model_key": embedder.key,
            "model": "model/model.onnx",
            "input": export.metadata.get("lookalike.input", "images"),
            "output": export.metadata.get("lookalike.output", "embeddings"),
            "preprocess": pre.to_dict(),
            "embedding_dim": embedder.embedding_dim,
            "thresholds": thresholds,
            "domain": None if record is None else _domain_for_page(record),
            "head": head_rel,
            "small_model": pre.channels == 1 and height * width <= 64 * 64,
            "version": __version__,
            "vendor": VENDOR_VERSIONS,
        },
    )
    _copy_front_end(out, vendor)
    return out


def _domain_for_page(record: DomainRecord) -> dict[str, Any]:
    """The domain record as plain numbers, for the page's out-of-domain warnings (the same
    score as :meth:`DomainRecord.score`, the same words as ``inference.domain``)."""
    from lookalike.inference.domain import warning_context

    return {
        "dim": record.dim,
        "mean": [float(v) for v in record.mean],
        "components": [[float(v) for v in row] for row in record.components],
        "variances": [float(v) for v in record.variances],
        "residual_variance": float(record.residual_variance),
        "threshold": float(record.threshold),
        "source": record.source,
        "context": warning_context(record),
    }


def _copy_front_end(out: Path, vendor: Path) -> None:
    """The page's files, the vendored libraries and their notice."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if _MODE_SERVER not in page:
        raise ExportError(f"{STATIC_DIR / 'index.html'} does not name its back end")
    atomic_write_bytes(
        out / "index.html", page.replace(_MODE_SERVER, _MODE_LOCAL).encode(), mode=0o644
    )
    static = out / "static"
    (static / "vendor").mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(STATIC_DIR / name, static / name)
    for name, rel in VENDOR_FILES.items():
        shutil.copyfile(vendor / rel, static / "vendor" / name)
    notice = _NOTICE.format(
        ort=VENDOR_VERSIONS["onnxruntime-web"], tfjs=VENDOR_VERSIONS["@tensorflow/tfjs"]
    )
    (static / "vendor" / "NOTICE.txt").write_text(notice, encoding="utf-8")
    (out / ".nojekyll").write_bytes(b"")
