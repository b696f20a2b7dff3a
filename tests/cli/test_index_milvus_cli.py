"""``lookalike index --store milvus-lite:…``, then ``search`` and ``dedup`` with ``--index``
alone: the same results as the FAISS store, through the real command line and model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_index_cli import ENGINE, collection  # noqa: F401  (the shared photo fixture)

from lookalike.cli import main

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, object]:
    assert main([*argv, *ENGINE]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_milvus_lite_store_from_the_command_line(
    collection: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "photos"
    shutil.copytree(collection, root)
    monkeypatch.chdir(tmp_path)  # a relative milvus-lite path is resolved here
    milvus, faiss = tmp_path / "idx-milvus", tmp_path / "idx-faiss"
    argv = ["index", str(root), "--index", str(milvus), "--store", "milvus-lite:vectors.db"]
    assert main([*argv, *ENGINE]) == 0
    out = capsys.readouterr().out
    assert f"(milvus-lite FLAT in milvus-lite:{tmp_path / 'vectors.db'})" in out
    assert main(["index", str(root), "--index", str(faiss), *ENGINE]) == 0
    assert "images (flat);" in capsys.readouterr().out

    # search and dedup find the store from the index folder, and agree with FAISS.
    query = str(root / "p1.jpg")
    want = run_json(capsys, ["search", query, "--index", str(faiss), "-k", "5", "--json"])
    got = run_json(capsys, ["search", query, "--index", str(milvus), "-k", "5", "--json"])
    want_hits = want["results"][0]["hits"]  # type: ignore[index]
    got_hits = got["results"][0]["hits"]  # type: ignore[index]
    assert [h["path"] for h in got_hits] == [h["path"] for h in want_hits]
    for a, b in zip(got_hits, want_hits, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    want = run_json(capsys, ["dedup", "--index", str(faiss), "--json"])
    got = run_json(capsys, ["dedup", "--index", str(milvus), "--json"])
    assert got["groups"] == want["groups"] and len(got["groups"]) >= 4  # type: ignore[arg-type]

    # An update (a new copy of a photo) reaches the collection.
    shutil.copy(root / "p1.jpg", root / "again.jpg")
    assert main(["index", str(root), "--index", str(milvus), *ENGINE]) == 0
    assert "1 added" in capsys.readouterr().out
    got = run_json(capsys, ["search", query, "--index", str(milvus), "-k", "2", "--json"])
    paths = {h["path"] for h in got["results"][0]["hits"]}  # type: ignore[index]
    assert paths == {"p1.jpg", "again.jpg"}

    # Another store for an existing index is refused; a bad spec is a usage error.
    assert main(["index", str(root), "--index", str(milvus), "--store", "faiss", *ENGINE]) == 2
    assert "keeps its vectors in milvus-lite:" in capsys.readouterr().err
    assert main(["index", str(root), "--index", str(milvus), "--store", "milvus://nohost"]) == 2
    assert "not a store" in capsys.readouterr().err
