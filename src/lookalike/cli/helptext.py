"""What each sub-command's ``--help`` says above and below its options: a description in
one to three sentences and worked examples.

One table, applied by :func:`describe` after every command module has registered its parser,
so the words a user reads first sit together and can be read (and kept consistent) in one
screen. ``tests/cli/test_help_and_flags.py`` checks that every sub-command has both.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping
from typing import NamedTuple


class Help(NamedTuple):
    """A sub-command's description and its examples (``lookalike …`` lines, with comments)."""

    description: str
    examples: str


COMMANDS: dict[str, Help] = {
    "compare": Help(
        "Compare two images: cosine similarity, euclidean distance, P(same) when the model has "
        "a pair head, and a same/different verdict with the threshold it used. With --pairs, "
        "score every row of a CSV (and report accuracy when the CSV has labels).",
        """\
lookalike compare a.jpg b.jpg
lookalike compare a.jpg b.jpg --model my-model --json
lookalike compare --pairs pairs.csv --out scores.csv   # columns a,b[,label]""",
    ),
    "embed": Help(
        "Embed images (files, or folders walked recursively) with a model and write the "
        "L2-normalised embeddings with their file names to an .npz or .parquet file.",
        """\
lookalike embed photos/ --out embeddings.npz
lookalike embed a.jpg b.jpg --model my-model --out embeddings.parquet""",
    ),
    "backbones": Help(
        "List the registered backbones with their embedding size, input size and whether their "
        "pretrained weights are available offline.",
        """\
lookalike backbones
lookalike backbones --json""",
    ),
    "info": Help(
        "Show what a model folder records: backbone, preprocessing, embedding, pair head, "
        "calibrated thresholds, measured metrics, provenance and files.",
        """\
lookalike info my-model
lookalike info my-model --json""",
    ),
    "train": Help(
        "Train a Siamese model on your own labelled images: an identity folder "
        "(root/<identity>/<image>) or a pairs CSV. Validation holds out identities (or "
        "images), reports accuracy with its 95 % interval, and calibrates the threshold; "
        "Ctrl-C keeps the last checkpoint for --resume.",
        """\
lookalike train photos-by-person/ --out my-model
lookalike train photos-by-person/ --out my-model --loss contrastive --epochs 5
lookalike train pairs.csv --out my-model --backbone mobilenet_v2
lookalike train photos-by-person/ --out my-model --resume   # after an interruption""",
    ),
    "train-head": Help(
        "Train a small pair head on a frozen model from 10-100 labelled pairs (seed 000's "
        "few-shot step) and write a model folder that answers P(same). Reports held-out "
        "accuracy with its sample size and interval, beside plain cosine on the same pairs.",
        """\
lookalike train-head pairs.csv --out my-head-model
lookalike train-head pairs.csv --model my-model --out my-head-model --holdout 0.3""",
    ),
    "demo": Help(
        "Train and evaluate seed 003's digit-pair Siamese network on scikit-learn's digits "
        "(offline) or MNIST, and write the model, plots and a report.",
        """\
lookalike demo
lookalike demo --out demo-output --data-dir mnist/   # MNIST IDX files""",
    ),
    "eval": Help(
        "Measure a model the way the field does (ROC AUC, EER, TAR@FAR, accuracy, "
        "precision@1, MAP@R, N-way K-shot) beside raw pixels and its frozen pretrained "
        "backbone, each with its sample size and 95 % interval, and write a report folder. "
        "--calibrate stores thresholds chosen on these pairs in the model folder.",
        """\
lookalike eval photos-by-person/ --model my-model --out report
lookalike eval photos-by-person/ --backbone mobilenet_v2 --out report-backbone
lookalike eval --pairs pairs.csv --model my-model --out report --calibrate
lookalike eval my-model photos-by-person/ --out report   # older form, still accepted""",
    ),
    "serve": Help(
        "Serve the web page and REST API on this machine: compare two images, see where they "
        "differ, label pairs and train a pair head, search an index.",
        """\
lookalike serve
lookalike serve --model my-model --index photos-index --port 8080
lookalike serve --backbone mobilenet_v2 --host 0.0.0.0 --token auto""",
    ),
    "explain": Help(
        "Draw where two images agree and differ as heatmaps (one PNG) and name the least "
        "alike region of each image, with the pair's scores.",
        """\
lookalike explain a.jpg b.jpg --out diff.png
lookalike explain a.jpg b.jpg --out diff.png --mode aligned --json""",
    ),
    "map": Help(
        "Embed a folder's images (or an index) and draw them on a 2-D map (PCA, t-SNE or "
        "UMAP), as thumbnails or labelled points.",
        """\
lookalike map photos/ --out map.png
lookalike map --index photos-index --out map.png --method tsne --labels""",
    ),
    "index": Help(
        "Create or update a persistent search index of a folder: only new or changed files "
        "are embedded again; --verify re-checks everything.",
        """\
lookalike index photos/ --index photos-index
lookalike index photos/ --index photos-index --model my-model --include '*.jpg'""",
    ),
    "search": Help(
        "Find the indexed images closest to one or more query images; --grid draws each "
        "query beside its hits.",
        """\
lookalike search query.jpg --index photos-index -k 5
lookalike search q1.jpg q2.jpg --index photos-index --grid hits.png --json""",
    ),
    "dedup": Help(
        "Find groups of near-duplicate images in a folder or an index, choose the copy to "
        "keep in each, and (with --move-to and --yes) move the others aside with a manifest "
        "that --undo restores. Without --yes nothing moves.",
        """\
lookalike dedup photos/ --html dedup.html
lookalike dedup photos/ --move-to duplicates/ --yes
lookalike dedup --undo duplicates/lookalike-moves-20250101-120000.json --yes""",
    ),
    "calibrate-dedup": Help(
        "Choose a model's near-duplicate threshold from edited copies of photos (crops, "
        "resizes, recompression, overlays) against distinct photos, and store it in the "
        "model folder with the precision and recall it reached.",
        """\
lookalike calibrate-dedup --model my-model
lookalike calibrate-dedup --model my-model --edits 16 --seed 1""",
    ),
    "export": Help(
        "Write the model as a standalone ONNX file (float32, or int8 checked against the "
        "float model on held-out images) or as a static web page that runs in the browser.",
        """\
lookalike export my-model --onnx model.onnx
lookalike export my-model --onnx model-int8.onnx --int8 --calibration photos/
lookalike export my-model --web site/""",
    ),
}

MAIN_EPILOG = """\
examples:
  lookalike compare a.jpg b.jpg
  lookalike train photos-by-person/ --out my-model
  lookalike eval photos-by-person/ --model my-model --out report
  lookalike serve --model my-model

Every command that uses a model takes --model DIR (a lookalike model folder) or
--backbone NAME (a pretrained backbone; default mobilenet_v2).
'lookalike COMMAND --help' describes a command, with examples."""


def epilog(examples: str) -> str:
    """``examples:`` and the example lines, indented as argparse indents options."""
    return "examples:\n" + textwrap.indent(examples, "  ")


def describe(
    parser: argparse.ArgumentParser, commands: Mapping[str, argparse.ArgumentParser]
) -> None:
    """Give ``parser`` and each sub-command parser its description and examples.

    Args:
        parser: The ``lookalike`` parser.
        commands: The sub-command parsers by name.

    Raises:
        KeyError: A sub-command has no entry in :data:`COMMANDS`.
    """
    parser.epilog = MAIN_EPILOG
    for name, command in commands.items():
        text = COMMANDS[name]
        command.description = textwrap.fill(text.description, width=79)
        command.epilog = epilog(text.examples)
