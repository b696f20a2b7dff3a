"""Tests for lookalike.imaging.files: listing image files without decoding them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.errors import DataError
from lookalike.imaging.files import IMAGE_EXTENSIONS, iter_image_files


def test_image_extensions() -> None:
    expected = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    expected |= {".ppm", ".pgm", ".pbm", ".jfif"}
    assert expected == IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


def make_tree(root: Path) -> None:
    files = [
        "b.png",
        "a.JPG",
        "B.jpeg",
        "notes.txt",
        "noext",
        ".hidden.png",
        ".cache/x.png",
        "sub/z.gif",
        "sub/a.webp",
        "sub/deeper/y.TIFF",
        "sub/deeper/skip.doc",
        "sub.png",
        "other/q.bmp",
        "other/.h/r.png",
    ]
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_iter_image_files_order_and_filters(tmp_path: Path) -> None:
    make_tree(tmp_path)
    expected = [
        "B.jpeg",
        "a.JPG",
        "b.png",
        "other/q.bmp",
        "sub/a.webp",
        "sub/deeper/y.TIFF",
        "sub/z.gif",
        "sub.png",
    ]
    found = list(iter_image_files(tmp_path))
    assert rel(found, tmp_path) == expected
    assert all(p.is_file() and str(p).startswith(str(tmp_path)) for p in found)
    assert list(iter_image_files(str(tmp_path))) == found  # deterministic, str root too

    assert rel(list(iter_image_files(tmp_path, recursive=False)), tmp_path) == [
        "B.jpeg",
        "a.JPG",
        "b.png",
        "sub.png",
    ]
    assert rel(list(iter_image_files(tmp_path, include=["sub/*"])), tmp_path) == [
        "sub/a.webp",
        "sub/deeper/y.TIFF",
        "sub/z.gif",
    ]
    assert rel(list(iter_image_files(tmp_path, include="sub/*")), tmp_path) == [
        "sub/a.webp",
        "sub/deeper/y.TIFF",
        "sub/z.gif",
    ]
    assert rel(
        list(iter_image_files(tmp_path, include=["sub/*", "*.png"], exclude=["*.gif", "b*"])),
        tmp_path,
    ) == ["sub/a.webp", "sub/deeper/y.TIFF", "sub.png"]
    assert rel(list(iter_image_files(tmp_path, exclude=["*/deeper/*"])), tmp_path) == [
        "B.jpeg",
        "a.JPG",
        "b.png",
        "other/q.bmp",
        "sub/a.webp",
        "sub/z.gif",
        "sub.png",
    ]


def test_iter_image_files_hidden_root_is_listed(tmp_path: Path) -> None:
    root = tmp_path / ".data"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    assert rel(list(iter_image_files(root)), root) == ["a.png"]


def test_iter_image_files_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(b"x")
    try:
        (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    except OSError:
        pytest.skip("symbolic links not supported here")
    assert rel(list(iter_image_files(tmp_path)), tmp_path) == ["d/a.png"]


def test_iter_image_files_bad_root(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(DataError, match="missing"):
        iter_image_files(missing)  # raised at the call, not at the first next()
    a_file = tmp_path / "f.png"
    a_file.write_bytes(b"x")
    with pytest.raises(DataError, match=r"f\.png"):
        iter_image_files(a_file)


def test_iter_image_files_reports_entries_it_cannot_examine(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    try:
        (tmp_path / "self.png").symlink_to("self.png")  # ELOOP, whoever runs the test
    except OSError:
        pytest.skip("symbolic links not supported here")
    errors: list[tuple[str, str]] = []
    found = iter_image_files(tmp_path, on_error=lambda p, why: errors.append((p.name, why)))
    assert rel(list(found), tmp_path) == ["a.png"]
    assert [name for name, _ in errors] == ["self.png"] and "symbolic links" in errors[0][1]


def test_shown_path_is_printable_and_leaves_normal_names_alone() -> None:
    import json
    import os

    from lookalike.imaging.files import shown_path

    assert shown_path("photos/café ü.jpg") == "photos/café ü.jpg"
    odd = os.fsdecode(b"caf\xe9.jpg")
    assert shown_path(odd) == "caf\\xe9.jpg"
    assert shown_path(Path("a") / odd) == "a/caf\\xe9.jpg"
    assert shown_path("two\nlines\t.png") == "two\\x0alines\\x09.png"
    for name in (odd, "\ud800.png"):  # never raises, always encodable
        shown = shown_path(name)
        shown.encode("utf-8")
        assert json.loads(json.dumps(shown, ensure_ascii=False)) == shown
