"""The report in a real browser: headless Chromium renders ``report.html`` and the screenshot is not blank.

A test tier that needs a browser: it runs where ``chromium`` (Debian's package; ``.ci/run``
installs it) or Chrome is on the PATH, and is skipped, saying so, elsewhere.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import bench

BROWSER = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
               None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)"
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def screenshot(page, png, profile, width: int = 1280, height: int = 2000) -> np.ndarray:
    """Chromium's screenshot of ``page`` (a file) as an ``(H, W, 3)`` uint8 array."""
    argv = [BROWSER, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
            page.resolve().as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    return np.asarray(Image.open(png).convert("RGB"))


def colourful(pixels: np.ndarray) -> np.ndarray:
    """Pixels whose channels differ by more than 60 of 255: plot lines, colour maps (text is grey)."""
    return (pixels.max(axis=-1).astype(int) - pixels.min(axis=-1)) > 60


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory):
    """A small real scale run (one image, two methods, two scales): plots, verdicts and pictures."""
    folder = tmp_path_factory.mktemp("browser")
    return bench.run(suites="scale", interpolators=["bilinear", "lstn"], profile="quick", out=folder / "run",
                     scale={"scales": [1.0, 4.0], "num_images": 1, "trials": 2, "steps": 3})


def test_report_renders_and_is_not_blank(scale_run, tmp_path):
    pixels = screenshot(scale_run.root / "report.html", tmp_path / "report.png", tmp_path / "profile")
    assert pixels.shape == (2000, 1280, 3)
    grey = pixels.mean(axis=-1)
    assert grey.std() > 20  # a blank page has none
    assert (grey < 128).mean() > 0.01  # text, lines and pictures
    # the first screen (1280 x 900) already shows the pictures: the ground truth and warps in colour,
    # the error maps through a colour map
    first = pixels[:900]
    assert colourful(first).sum() > 2000


def test_blank_page_fails_the_check(tmp_path):
    """The checks above can fail: an empty page has no spread and no colour."""
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    pixels = screenshot(page, tmp_path / "blank.png", tmp_path / "profile")
    assert pixels.mean(axis=-1).std() < 1 and colourful(pixels).sum() == 0
