"""The index under attack and bad luck: a file rewritten mid-run, odd file names, unreadable
folders, a damaged database and a full disk (issue 14, failures 1, 4, 6 and 7)."""

from __future__ import annotations

import errno
import os
import pickle
import select
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.errors import DataError, IndexFolderError
from lookalike.imaging.files import iter_image_files
from lookalike.imaging.images import ImageSource
from lookalike.index import update as iu
from lookalike.index.index import Index
from pixel_embedder import DIM, PixelEmbedder, random_image, write

faiss = pytest.importorskip("faiss")


def age(root: Path) -> None:
    past = time.time() - 60
    for path in root.rglob("*"):
        os.utime(path, (past, past), follow_symlinks=False)


def own_vector(path: Path) -> np.ndarray:
    """The model's embedding of a file's bytes as they are now (unit row, float32)."""
    row = PixelEmbedder().embed([path.read_bytes()])[0]
    return np.asarray(row / np.linalg.norm(row), dtype=np.float32)


def stored(index: Index, rel: str) -> np.ndarray:
    snap = index.vectors([rel])
    assert snap.paths == [rel]
    return snap.vectors[0]


def faiss_agrees(index: Index) -> None:
    snap = index.vectors()
    structure = index.structure()
    assert structure.ntotal == len(snap.ids)
    if len(snap.ids):
        got = np.stack([structure.reconstruct(int(i)) for i in snap.ids])
        np.testing.assert_allclose(got, snap.vectors, atol=1e-6)


# --------------------------------------------------------------------------- 1: the race


class RewritingEmbedder(PixelEmbedder):
    """A model that, during its first forward pass, overwrites a file that was hashed and is
    not yet read: the rewrite falls deterministically between the hash and the decode."""

    def __init__(self, victim: Path, seed: int, *, garbage: bool = False) -> None:
        super().__init__()
        self.victim, self.seed, self.garbage, self.calls = victim, seed, garbage, 0

    def embed(self, images: Sequence[ImageSource] | np.ndarray, *, batch_size: int = 32) -> Any:
        self.calls += 1
        if self.calls == 1 and self.garbage:
            self.victim.write_bytes(b"\x89PNG\r\n\x1a\n no longer an image")
        elif self.calls == 1:
            random_image(self.seed, (48, 40)).save(self.victim, format="PNG")
        return super().embed(images, batch_size=batch_size)


def test_a_file_rewritten_between_hash_and_decode_cannot_poison_the_cache(
    tmp_path: Path,
) -> None:
    root = tmp_path / "photos"
    for i in range(5):  # decoded first: the rewrite happens while these are embedded
        write(root / f"{i}.png", i)
    write(root / "a.png", 100)
    shutil.copy2(root / "a.png", root / "a_copy.png")  # identical bytes, same content hash
    age(root)
    original = own_vector(root / "a_copy.png")

    embed = RewritingEmbedder(root / "a.png", seed=200)
    with Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM) as index:
        report = index.update(embed, batch_size=1)
        assert sorted(report.added) == [
            "0.png",
            "1.png",
            "2.png",
            "3.png",
            "4.png",
            "a.png",
            "a_copy.png",
        ]
        assert report.skipped == []
        # the untouched copy carries its own content's vector, never the rewritten file's
        np.testing.assert_allclose(stored(index, "a_copy.png"), original, atol=1e-5)
        # the rewritten file carries its new content's vector
        np.testing.assert_allclose(stored(index, "a.png"), own_vector(root / "a.png"), atol=1e-5)
        faiss_agrees(index)
        # a search with the copy's own bytes finds the copy at cosine 1
        hits = index.search(original, k=3)[0]
        assert hits[0].path == "a_copy.png" and hits[0].score == pytest.approx(1.0, abs=1e-4)

        # a rerun settles the rewritten file (stored with time -1) and changes nothing else
        report = index.update(PixelEmbedder())
        assert report.embedded == 0 and not report.added and not report.updated
        np.testing.assert_allclose(stored(index, "a_copy.png"), original, atol=1e-5)


def test_files_larger_than_the_read_limit_are_hashed_around_the_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "photos"
    for i in range(3):
        write(root / f"{i}.png", i)
    age(root)
    from lookalike.index import reader

    monkeypatch.setattr(reader, "MAX_READ_BYTES", 16)  # every file takes the large-file path
    with Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM) as index:
        report = index.update(PixelEmbedder())
        assert report.embedded == 3 and report.skipped == []
        for i in range(3):
            np.testing.assert_allclose(
                stored(index, f"{i}.png"), own_vector(root / f"{i}.png"), atol=1e-5
            )


def poison(index_dir: Path, content_of: Path, wrong: np.ndarray) -> None:
    """Store a wrong vector under a file's content hash, as the old race did."""
    digest = iu.hash_file(content_of)
    con = sqlite3.connect(index_dir / "index.sqlite")
    con.execute(
        "UPDATE embeddings SET vector = ? WHERE hash = ?",
        (np.ascontiguousarray(wrong, dtype="<f4").tobytes(), digest),
    )
    con.commit()
    con.close()


def test_verify_repairs_a_poisoned_cache_and_stale_rows(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(6):
        write(root / f"{i}.png", i)
    shutil.copy2(root / "0.png", root / "0_copy.png")
    age(root)
    index_dir = tmp_path / "idx"
    with Index.create(index_dir, root, model_key="pixels-v1", dim=DIM) as index:
        index.update(PixelEmbedder())
        index.set_labels({"0_copy.png": "kept"})
    truth = own_vector(root / "0.png")
    poison(index_dir, root / "0.png", own_vector(root / "5.png"))
    # a stale row: the database says 3.png holds 4.png's content, with 3.png's size and time
    con = sqlite3.connect(index_dir / "index.sqlite")
    con.execute(
        "UPDATE files SET content_hash = (SELECT content_hash FROM files WHERE path = '4.png') "
        "WHERE path = '3.png'"
    )
    con.commit()
    con.close()

    with Index.open(index_dir) as index:
        # a normal run trusts size and time: the poison stays
        report = index.update(PixelEmbedder())
        assert report.unchanged == 7 and report.embedded == 0
        assert float(stored(index, "0_copy.png") @ truth) < 0.9
        ids_before = dict(zip(index.vectors().paths, index.vectors().ids.tolist(), strict=True))

        report = index.update(PixelEmbedder(), verify=True)
        assert report.verified == 7
        assert report.repaired == ["0.png", "0_copy.png", "3.png"]
        assert "verified 7, repaired 3" in report.summary()
        np.testing.assert_allclose(stored(index, "0_copy.png"), truth, atol=1e-5)
        np.testing.assert_allclose(stored(index, "0.png"), truth, atol=1e-5)
        hits = index.search(truth, k=2)[0]
        assert {h.path for h in hits} == {"0.png", "0_copy.png"}
        assert all(h.score == pytest.approx(1.0, abs=1e-4) for h in hits)
        assert report.updated == ["3.png"] and report.embedded == 6
        np.testing.assert_allclose(stored(index, "3.png"), own_vector(root / "3.png"), atol=1e-5)
        faiss_agrees(index)
        snap = index.vectors()
        ids_after = dict(zip(snap.paths, snap.ids.tolist(), strict=True))
        assert ids_after["1.png"] == ids_before["1.png"]  # sound rows keep their ids
        assert snap.labels[snap.paths.index("0_copy.png")] == "kept"

        # verifying a sound index repairs nothing
        report = index.update(PixelEmbedder(), verify=True)
        assert report.repaired == [] and report.verified == len(index) == 7


# --------------------------------------------------------------------------- 4: odd file names

ODD = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8


def test_a_name_that_is_not_utf8_is_indexed_searched_and_removed(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(3):
        write(root / f"{i}.png", i)
    try:
        write(root / ODD, 50)
        write(root / os.fsdecode(b"sub\xff") / "x.png", 51)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not valid UTF-8")
    age(root)
    index_dir = tmp_path / "idx"
    with Index.create(index_dir, root, model_key="pixels-v1", dim=DIM) as index:
        report = index.update(PixelEmbedder())
        assert report.skipped == [] and len(index) == 5
        odd_sub = os.fsdecode(b"sub\xff") + "/x.png"
        assert ODD in index.paths() and odd_sub in index.paths()
        hit = index.search(own_vector(root / ODD), k=1)[0][0]
        assert hit.path == ODD and hit.score == pytest.approx(1.0, abs=1e-4)
        assert index.resolve(hit.path).read_bytes() == (root / ODD).read_bytes()
        assert index.set_labels({ODD: "café"}) == 1
    # stored as the file's own bytes: a reopen and a rerun see the same file, unchanged
    con = sqlite3.connect(index_dir / "index.sqlite")
    kinds = dict(con.execute("SELECT CAST(path AS BLOB), typeof(path) FROM files").fetchall())
    con.close()
    assert kinds[b"caf\xe9.png"] == "blob" and kinds[b"0.png"] == "text"
    with Index.open(index_dir) as index:
        report = index.update(PixelEmbedder())
        assert report.unchanged == 5 and report.embedded == 0 and not report.added
        assert index.vectors([ODD]).labels == ["café"]
        (root / ODD).unlink()
        report = index.update(PixelEmbedder())
        assert report.removed == [ODD] and ODD not in index
        faiss_agrees(index)


# --------------------------------------------------------------------------- 7: unreadable folders

NOBODY = 65534


def as_unprivileged(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` where file permissions hold: here when not root, else in a forked child that
    gave up root (``setuid``), so ``chmod 000`` really blocks it. Returns what ``fn`` returns
    (pickled back), or raises what it raised."""
    if os.geteuid() != 0:
        return fn()
    read, written = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                payload = pickle.dumps((True, fn()))
            except BaseException as exc:  # reported to the parent
                payload = pickle.dumps((False, exc))
            with os.fdopen(written, "wb") as out:
                out.write(payload)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(written)
    with os.fdopen(read, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], 120)
        if not ready:  # never hang the suite on a child that is stuck
            os.kill(pid, signal.SIGKILL)
        data = pipe.read() if ready else b""
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


@pytest.fixture()
def shared_tmp() -> Iterator[Path]:
    """A temporary folder an unprivileged user may write (pytest's own is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="lookalike-hardening-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o777)
        shutil.rmtree(folder, ignore_errors=True)


def open_to_all(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_unreadable_folder_is_reported_and_skipped(shared_tmp: Path) -> None:
    root = shared_tmp / "photos"
    for i in range(4):
        write(root / f"{i}.png", i)
        write(root / "locked" / f"{i}.png", 10 + i)
        write(root / "open" / f"{i}.png", 20 + i)
    age(root)
    index_dir = shared_tmp / "idx"
    index_dir.mkdir()
    open_to_all(shared_tmp)
    # indexed while readable: the locked folder's files are in the index
    with Index.create(index_dir, root, model_key="pixels-v1", dim=DIM) as index:
        index.update(PixelEmbedder())
        assert len(index) == 12
    open_to_all(shared_tmp)
    (root / "locked").chmod(0o000)
    (root / "open" / "2.png").chmod(0o000)
    os.utime(root / "open" / "2.png", (time.time() - 30, time.time() - 30))  # must be read again

    def update() -> tuple[list[str], list[tuple[str, str]], list[str], int]:
        with Index.open(index_dir) as index:
            report = index.update(PixelEmbedder(), progress=False)
            return index.paths(), report.skipped, report.removed, report.unchanged

    paths, skipped, removed, unchanged = as_unprivileged(update)
    assert dict(skipped).keys() == {"locked/", "open/2.png"}
    assert "Permission denied" in dict(skipped)["locked/"]
    assert removed == [f"locked/{i}.png" for i in range(4)]  # open/2.png: skipped and dropped
    assert paths == [*(f"{i}.png" for i in range(4)), "open/0.png", "open/1.png", "open/3.png"]
    assert unchanged == 7

    # the library's listing reports it too, and without a handler still raises
    def listing() -> tuple[list[str], list[tuple[str, str]]]:
        errors: list[tuple[str, str]] = []
        found = iter_image_files(root, on_error=lambda p, why: errors.append((p.name, why)))
        names = [p.relative_to(root).as_posix() for p in found]
        try:
            list(iter_image_files(root))
        except DataError as exc:
            errors.append(("raised", str(exc)))
        return names, errors

    names, errors = as_unprivileged(listing)
    assert "locked/0.png" not in names and "open/2.png" in names  # listed; reading it fails
    assert [e[0] for e in errors] == ["locked", "raised"] and "locked" in errors[1][1]


def test_an_entry_whose_type_cannot_be_read_is_reported(tmp_path: Path) -> None:
    """A symbolic link to itself (ELOOP) cannot be examined, whoever runs the test."""
    root = tmp_path / "photos"
    write(root / "a.png", 1)
    try:
        (root / "loop.png").symlink_to("loop.png")
    except OSError:
        pytest.skip("symbolic links not supported here")
    age(root)
    with Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM) as index:
        report = index.update(PixelEmbedder())
        assert index.paths() == ["a.png"]
    assert [p for p, _ in report.skipped] == ["loop.png"]
    assert "symbolic links" in report.skipped[0][1]


# --------------------------------------------------------------------------- 6: damaged database


def build(root: Path, index_dir: Path, n: int = 200) -> None:
    for i in range(n):
        write(root / f"{i:03d}.png", i)
    age(root)
    with Index.create(index_dir, root, model_key="pixels-v1", dim=DIM) as index:
        index.update(PixelEmbedder())


def damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    if how == "middle":  # zero pages in the middle: the tables are damaged, the header is fine
        data = data[: 4096 * 3] + bytes(4096 * 2) + data[4096 * 5 :]
    elif how == "garbage":
        data = b"not a database at all " * (len(data) // 22)
    else:  # truncated
        data = data[: len(data) // 3]
    db.write_bytes(data)
    for path in db.parent.glob("vectors-*.faiss"):
        path.unlink()


@pytest.mark.parametrize("how", ["middle", "garbage", "truncated"])
def test_a_damaged_database_is_one_line_naming_the_file_and_the_fix(
    tmp_path: Path, how: str
) -> None:
    root, index_dir = tmp_path / "photos", tmp_path / "idx"
    build(root, index_dir)
    db = index_dir / "index.sqlite"
    damage(db, how)
    fix = f"lookalike index {root.absolute()} --index {index_dir} --rebuild"

    def check(exc: pytest.ExceptionInfo[IndexFolderError], full_fix: bool = True) -> None:
        message = str(exc.value)
        assert "\n" not in message and str(db) in message and "damaged" in message
        assert (fix if full_fix else f"--index {index_dir} --rebuild") in message

    with pytest.raises(IndexFolderError) as caught, Index.open(index_dir) as index:
        index.search(np.ones(DIM, np.float32), 3)
    check(caught, full_fix=False)
    opened = Index.open_or_create
    with (
        pytest.raises(IndexFolderError) as caught,
        opened(index_dir, root, model_key="pixels-v1", dim=DIM) as index,
    ):
        index.update(PixelEmbedder())
    check(caught)
    if how != "middle":  # a file SQLite cannot even open
        with pytest.raises(IndexFolderError) as caught:
            Index.recorded_source(index_dir)
        check(caught, full_fix=False)

    # the fix works: the index is recreated from the folder
    with Index.create(index_dir, root, model_key="pixels-v1", dim=DIM, overwrite=True) as index:
        assert index.update(PixelEmbedder()).embedded == 200 and len(index) == 200
        faiss_agrees(index)


def test_every_kind_of_database_failure_is_one_line() -> None:
    from lookalike.index.failures import database_error

    db = Path("/data/idx/index.sqlite")
    cases = {
        "is full": sqlite3.OperationalError("database or disk is full"),
        "may read and write": sqlite3.OperationalError("attempt to write a readonly database"),
        "locked": sqlite3.OperationalError("database is locked"),
        "damaged": sqlite3.DatabaseError("database disk image is malformed"),
    }
    for words, exc in cases.items():
        message = str(database_error(db, exc))
        assert words in message and str(db) in message and "\n" not in message, message
    full = str(database_error(db, OSError(errno.ENOSPC, "No space left on device")))
    assert "is full" in full and "--rebuild" in full


# --------------------------------------------------------------------------- 6: full disk


def test_a_full_database_is_one_line_and_the_next_run_recovers(tmp_path: Path) -> None:
    root, index_dir = tmp_path / "photos", tmp_path / "idx"
    build(root, index_dir, n=20)
    for i in range(20, 400):
        write(root / f"{i:03d}.png", i)
    age(root)
    with Index.open(index_dir) as index:
        # SQLite's own limit on the file's size: the disk is "full" after a few pages more
        pages = index._store.conn.execute("PRAGMA page_count").fetchone()[0]
        index._store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(IndexFolderError) as caught:
            index.update(PixelEmbedder(), batch_size=16)
        message = str(caught.value)
        assert "is full" in message and str(index_dir / "index.sqlite") in message
        assert "\n" not in message
        kept = len(index)
        assert 20 <= kept < 400
        faiss_agrees(index)  # the last committed batch, consistent
    with Index.open(index_dir) as index:  # space again: the same command finishes the job
        report = index.update(PixelEmbedder())
        assert len(index) == 400 and len(report.added) == 400 - kept
        faiss_agrees(index)


def _mount_tmpfs(where: Path, size: str) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_a_really_full_disk_is_one_line(tmp_path: Path) -> None:
    """On a tiny tmpfs (when this test may mount one): ENOSPC from SQLite, its WAL or FAISS."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "96k"):
        pytest.skip("cannot mount a tiny tmpfs here (needs root)")
    try:
        root = tmp_path / "photos"
        for i in range(600):
            write(root / f"{i:03d}.png", i)
        age(root)
        with (
            pytest.raises(IndexFolderError) as caught,
            Index.create(disk / "idx", root, model_key="pixels-v1", dim=DIM) as index,
        ):
            index.update(PixelEmbedder(), batch_size=32)
        message = str(caught.value)
        assert "is full" in message and "\n" not in message, message
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_file_broken_between_hash_and_decode_does_not_take_its_copies_along(
    tmp_path: Path,
) -> None:
    root = tmp_path / "photos"
    for i in range(5):
        write(root / f"{i}.png", i)
    write(root / "a.png", 100)
    shutil.copy2(root / "a.png", root / "a_copy.png")
    shutil.copy2(root / "a.png", root / "a_copy2.png")
    age(root)
    original = own_vector(root / "a_copy.png")
    embed = RewritingEmbedder(root / "a.png", seed=0, garbage=True)
    with Index.create(tmp_path / "idx", root, model_key="pixels-v1", dim=DIM) as index:
        report = index.update(embed, batch_size=1)
        assert [p for p, _ in report.skipped] == ["a.png"]  # only the file that broke
        assert "a.png" not in index and len(index) == 7
        assert report.embedded == 6 and report.reused_from_cache == 1  # the copies: once
        for copy in ("a_copy.png", "a_copy2.png"):
            np.testing.assert_allclose(stored(index, copy), original, atol=1e-5)
        faiss_agrees(index)
