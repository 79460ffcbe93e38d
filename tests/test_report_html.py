"""The listening page (index.html): self-contained, and every player and image loads in a browser."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audiomae.cli import main
from audiomae.eval.report import best_cells

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="chromium is not installed (Debian: apt-get install chromium); the listening page is not "
    "rendered in a browser",
)
METHODS = ("zero", "lpc")


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("listen") / "demo"
    args = ["demo", "--out", str(out), "--methods", ",".join(METHODS), "--condition", "ge20b3"]
    assert main(args) == 0
    return out / "index.html"


def sources(page: Path) -> list[str]:
    return re.findall(r'\bsrc="([^"]*)"', page.read_text())


def test_demo_page_is_static_and_small(demo_page):
    text = demo_page.read_text()
    # No network: nothing is fetched from anywhere but the files beside the page.
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert "<script src" not in text
    assert len(text.encode()) < 30_000
    srcs = sources(demo_page)
    names = ["clean", "lossy", *METHODS]
    assert srcs == [s for n in names for s in (f"{n}.wav", f"{n}_spec.png")]
    for src in srcs:
        assert (demo_page.parent / src).is_file(), src
    # One score table, the best value of each of its four columns marked.
    assert text.count('<table class="scores">') == 1
    assert text.count('class="best"') >= 4
    assert all(h in text for h in ("PESQ-WB", "STOI", "PLCMOS", "LSD lost (dB)"))


def test_spectrograms_share_one_size(demo_page):
    from PIL import Image

    sizes = {Image.open(demo_page.parent / s).size for s in sources(demo_page) if s.endswith(".png")}
    assert len(sizes) == 1


def render(page: Path, profile: Path) -> tuple[dict, list[str]]:
    """Load ``page?check`` in headless Chromium: the page's own check report and the console."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
        f"{page.resolve().as_uri()}?check",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page wrote no check report; chromium said:\n{done.stderr[-3000:]}"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), console


def assert_page_loads(page: Path, profile: Path, n_audio: int) -> dict:
    report, console = render(page, profile)
    assert console == [] and report["errors"] == []
    assert len(report["audio"]) == n_audio and len(report["images"]) == n_audio
    for a in report["audio"]:
        assert a["error"] is None and a["readyState"] >= 1, a
        assert a["duration"] > 0.5, a
    for img in report["images"]:
        assert img["naturalWidth"] > 0, img
    assert len({img["naturalWidth"] for img in report["images"]}) == 1
    # Clicking a spectrogram at the middle of its time axis seeks its audio to the middle.
    assert report["click"]["currentTime"] == pytest.approx(report["click"]["expected"], abs=0.05)
    return report


@needs_chromium
def test_demo_page_loads_in_chromium(demo_page, tmp_path):
    assert_page_loads(demo_page, tmp_path / "profile", 2 + len(METHODS))


@needs_chromium
def test_a_missing_file_fails_the_check(demo_page, tmp_path):
    page = tmp_path / "copy" / "index.html"
    shutil.copytree(demo_page.parent, page.parent)
    (page.parent / "lpc.wav").unlink()
    (page.parent / "zero_spec.png").unlink()
    report, _ = render(page, tmp_path / "profile")
    by_src = {a["src"]: a for a in report["audio"]}
    assert by_src["lpc.wav"]["error"] is not None and by_src["clean.wav"]["error"] is None
    assert {i["src"]: i["naturalWidth"] for i in report["images"]}["zero_spec.png"] == 0
    assert len(report["errors"]) == 2


def test_best_cells_per_column():
    rows = {
        "a": {"PESQ-WB": 2.0, "LSD lost (dB)": 9.0, "STOI": 0.901, "PLCMOS": 3.101},
        "b": {"PESQ-WB": 3.0, "LSD lost (dB)": 7.0, "STOI": 0.899, "PLCMOS": 3.099},
        "c": {"PESQ-WB": math.nan, "LSD lost (dB)": 8.0, "STOI": 0.5, "PLCMOS": 2.0},
    }
    # Larger is better, LSD smaller; ties at the shown precision (STOI: 3 decimals, others 2)
    # are all marked; nan never.
    best = {("b", "PESQ-WB"), ("b", "LSD lost (dB)"), ("a", "STOI"), ("a", "PLCMOS"), ("b", "PLCMOS")}
    assert best_cells(rows) == best
    assert best_cells({"a": {"PESQ-WB": math.nan}}) == set()


def test_lost_spans():
    from audiomae.eval.report import lost_spans

    lost = np.array([0, 1, 1, 0, 0, 1], dtype=bool)
    spans = lost_spans(lost)
    assert [len(s) for s in spans] == [2, 2]
    assert [t for s in spans for t in s] == pytest.approx([0.02, 0.06, 0.1, 0.12])
    assert lost_spans(np.zeros(4, dtype=bool)) == []


@pytest.fixture(scope="module")
def benchmark_page(tmp_path_factory) -> Path:
    from audiomae.audio import SAMPLE_RATE, load_audio, save_audio
    from audiomae.plc.demo import demo_clip_path

    root = tmp_path_factory.mktemp("bench")
    speech = load_audio(demo_clip_path())
    for i in range(3):
        save_audio(root / "clips" / f"s{i}.wav", speech[i * SAMPLE_RATE : (i + 2) * SAMPLE_RATE])
    out = root / "results"
    args = ["eval-plc", str(root / "clips"), "--methods", "zero,lpc", "--conditions", "ge10b2,ge20b3"]
    assert main([*args, "--out", str(out), "--html", "--no-progress"]) == 0
    return out / "index.html"


def test_eval_plc_html_has_two_files_per_condition(benchmark_page):
    out = benchmark_page.parent
    assert (out / "results.csv").is_file()
    text = benchmark_page.read_text()
    # Means over all three files per condition, then two example clips per condition.
    assert text.count("means over 3 files") == 2 and text.count("<section>") == 4
    srcs = sources(benchmark_page)
    assert len(srcs) == 4 * 2 * 4  # clips x (audio, image) x (clean, lossy, zero, lpc)
    assert "clips/ge20b3/02-s1/lpc.flac" in srcs and not any("s2" in s for s in srcs)
    for src in srcs:
        assert (out / src).is_file(), src
    assert "http://" not in text and "https://" not in text


@needs_chromium
def test_eval_plc_html_loads_in_chromium(benchmark_page, tmp_path):
    assert_page_loads(benchmark_page, tmp_path / "profile", 4 * 4)
