"""``lookalike export MODEL --web OUT_DIR`` without a browser: what the site holds, what it
refuses, and the page's preprocessing against Pillow's (in Node, when it is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server_helpers import small_model_dir

STATIC = Path(__file__).resolve().parents[2] / "src" / "lookalike" / "server" / "static"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(small_model_dir(tmp_path_factory.mktemp("build-site")))


def _vendor_or_skip() -> None:
    from lookalike.errors import ExportError
    from lookalike.web import find_vendor

    try:
        find_vendor()
    except ExportError as exc:
        pytest.skip(str(exc))


def test_missing_libraries_are_one_line_with_the_fix(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lookalike.cli import main

    monkeypatch.setenv("LOOKALIKE_WEB_VENDOR", str(tmp_path / "nowhere"))
    code = main(["export", str(model_dir), "--web", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "npm ci --prefix web" in err and "scripts/dev env" in err
    assert not (tmp_path / "site").exists()  # nothing half-built


def test_cli_builds_a_self_contained_site(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lookalike.cli import main
    from lookalike.inference import load_embedder

    _vendor_or_skip()
    out = tmp_path / "site"
    assert main(["export", str(model_dir), "--web", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = (out / "index.html").read_text()
    assert '<meta name="lookalike-api" content="local">' in page
    # Relative URLs only (GitHub Pages serves a project under /NAME/), and nothing remote.
    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert urls and all(not u.startswith(("/", "http:", "https:", "//")) for u in urls)
    for url in urls:
        assert (out / url).is_file() or url == "docs", url
    for name in ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"):
        assert (out / "static" / "vendor" / name).stat().st_size > 0
    assert "MIT" in (out / "static" / "vendor" / "NOTICE.txt").read_text()
    site = json.loads((out / "site.json").read_text())
    assert site["model_key"] == load_embedder(model_dir).key
    assert site["preprocess"]["input_size"] == [28, 28] and site["head"] is None
    assert (out / site["model"]).is_file()
    # The page's code is the server's page, not a copy of it.
    for name in ("app.js", "api-local.js", "pixels.js", "headfile.js"):
        assert (out / "static" / name).read_bytes() == (STATIC / name).read_bytes()

    # Rebuilding into the same site is fine; into a folder of other files it is refused.
    assert main(["export", str(model_dir), "--web", str(out)]) == 0
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", str(model_dir), "--web", str(other)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]


def test_a_models_own_head_ships_with_the_page(tmp_path: Path) -> None:
    from lookalike.inference import load_embedder
    from lookalike.model.head_file import read_head_file
    from lookalike.model.network import SiameseModel
    from lookalike.web import build_site

    _vendor_or_skip()
    model = SiameseModel.create("small_cnn", pretrained=False, input_size=28, head=True)
    model.thresholds["probability"] = 0.35
    model.save(tmp_path / "with-head")
    out = build_site(tmp_path / "with-head", tmp_path / "site")
    site = json.loads((out / "site.json").read_text())
    head = read_head_file(out / site["head"])
    assert head.model_key == site["model_key"] == load_embedder(tmp_path / "with-head").key
    assert head.threshold == 0.35 and "probability" not in site["thresholds"]
    assert model.head is not None
    for name, tensor in model.head.state_dict().items():
        np.testing.assert_array_equal(head.tensors[name], tensor.numpy())


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (requirements/system.txt)")
def test_page_preprocessing_is_pillows_pixel_for_pixel(tmp_path: Path) -> None:
    """pixels.js (decode aside) against Preprocess: the same float32 input, bit for bit."""
    from lookalike.imaging.images import load_image
    from lookalike.imaging.preprocess import Preprocess

    rng = np.random.default_rng(0)
    cases = []
    settings: list[tuple[tuple[int, int], tuple[int, int], int, str, str, float]] = [
        ((37, 50), (28, 28), 1, "bilinear", "squash", 1.0),
        ((200, 300), (224, 224), 3, "bilinear", "squash", 1.0),
        ((199, 301), (224, 224), 3, "bicubic", "center_crop", 0.875),
        ((30, 20), (48, 64), 3, "bilinear", "center_crop", 1.0),  # upscaling
        ((28, 28), (28, 28), 1, "bilinear", "squash", 1.0),  # no resize
        # Pillow 13 runs the vertical pass first when the height shrinks much more.
        ((355, 202), (224, 224), 3, "bilinear", "squash", 1.0),
        ((392, 305), (224, 224), 3, "bilinear", "squash", 1.0),
        ((300, 90), (112, 112), 1, "bicubic", "center_crop", 0.875),
    ]
    for _ in range(12):  # and random shapes either way
        h, w, oh, ow = (int(v) for v in rng.integers(6, 90, 4))
        settings.append(((h, w), (oh, ow), 1, "bilinear", "squash", 1.0))
    for (h, w), size, channels, interpolation, resize, crop in settings:
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[..., 3] = np.where(rng.random((h, w)) < 0.3, rng.integers(0, 256, (h, w)), 255)
        pre = Preprocess(
            input_size=size,
            channels=channels,
            mean=(0.45,) * channels,
            std=(0.226,) * channels,
            resize=resize,  # type: ignore[arg-type]
            crop_fraction=crop,
            interpolation=interpolation,
        )
        image = load_image(Image.fromarray(rgba, "RGBA"), mode="L" if channels == 1 else "RGB")
        expected = pre.image_to_array(image)
        cases.append(
            {"rgba": rgba.ravel().tolist(), "w": w, "h": h, "pre": pre.to_dict(),
             "expected": expected.ravel().tolist()}
        )  # fmt: skip
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = f"""
        global.window = global;
        require({json.dumps(str(STATIC / "pixels.js"))});
        const cases = require({json.dumps(str(tmp_path / "cases.json"))});
        const out = cases.map((c) => {{
          const got = LookalikePixels.toInput(
            {{ rgba: Uint8Array.from(c.rgba), width: c.w, height: c.h }}, c.pre);
          let worst = 0;
          got.forEach((v, i) => {{ worst = Math.max(worst, Math.abs(v - c.expected[i])); }});
          return [got.length === c.expected.length, worst];
        }});
        console.log(JSON.stringify(out));
    """
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[True, 0]] * len(settings)
