"""What a run reads is what it recorded: image hashes in meta.json, --resume refusing changed images, images and
``--out`` checked before anything is written (exit 2, naming the file or the problem)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import skimage.io
from fake_suite import run_cli
from harness_fixtures import QUICK

import bench
from bench.api import UsageError

#: a tiny scale run on a folder of images: one scale, one trial of one step, bilinear only
TINY_SCALE = ("--suite", "scale", "--interpolators", "bilinear", "--quick", "--device", "cpu", "--no-progress",
              "--option", "scale.scales=2", "--option", "scale.trials=1", "--option", "scale.steps=1")


def write_image(path: Path, seed: int, size: int = 48) -> None:
    rng = np.random.default_rng(seed)
    skimage.io.imsave(path, (rng.random((size, size)) * 255).astype(np.uint8), check_contrast=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def images(fake_suites) -> Path:
    folder = fake_suites / "imgs"
    folder.mkdir()
    for i in range(2):
        write_image(folder / f"img{i}.png", i)
    return folder


@pytest.fixture
def image_run(images, capsys) -> Path:
    code, _, err = run_cli(capsys, "run", *TINY_SCALE, "--images", str(images), "--out", "run")
    assert code == 0, err
    return Path("run")


class TestRecorded:
    def test_meta_holds_every_images_sha256(self, image_run, images):
        inputs = json.loads((image_run / "meta.json").read_text())["inputs"]
        assert inputs == {
            "images": {str(images.resolve()): {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                               for p in sorted(images.iterdir())}},
            "builtin_images": {},
        }

    def test_builtin_images_are_recorded_when_read(self, fake_suites, capsys):
        bench.run(suites="scale", interpolators="bilinear", profile="quick", out="run", device="cpu",
                  scale={"scales": [2.0], "trials": 1, "steps": 1, "num_images": 1})
        inputs = json.loads(Path("run/meta.json").read_text())["inputs"]
        assert inputs["images"] == {} and sorted(inputs["builtin_images"]) == sorted(
            ["camera", "astronaut", "brick", "grass", "gravel", "coffee", "rocket", "coins"])


class TestResumeRefusesChangedImages:
    @pytest.mark.parametrize("change", ["changed", "added", "removed"])
    def test_exits_2_naming_the_file(self, image_run, images, capsys, change):
        if change == "changed":  # the same name and size, other pixels (PSNR off by dBs, silently, on main)
            write_image(images / "img1.png", 99)
            name = "img1.png"
        elif change == "added":
            write_image(images / "img2.png", 2)
            name = "img2.png"
        else:
            (images / "img0.png").unlink()
            name = "img0.png"
        before = snapshot(image_run)
        code, _, err = run_cli(capsys, "run", "--resume", str(image_run))
        assert code == 2
        assert f"{images.resolve() / name} was {change}" in err or f"{images.resolve() / name} changed (sha256" in err
        assert "put the images back, or start a new run" in err
        assert snapshot(image_run) == before
        code, _, err = run_cli(capsys, "run", "--resume", str(image_run), "--dry-run")
        assert code == 2 and name in err

    def test_the_same_images_resume(self, image_run, images, capsys):
        shutil.copy2(images / "img0.png", images / "copy")  # not an image file: not read, not recorded
        (image_run / "cells" / sorted(p.name for p in (image_run / "cells").glob("*.json"))[0]).unlink()
        code, _, err = run_cli(capsys, "run", "--resume", str(image_run))
        assert code == 0, err
        assert "1 cell(s) run, 0 failed" in err

    def test_an_older_run_without_hashes_resumes_with_a_warning(self, image_run, capsys):
        meta = json.loads((image_run / "meta.json").read_text())
        del meta["inputs"]
        (image_run / "meta.json").write_text(json.dumps(meta))
        code, _, err = run_cli(capsys, "run", "--resume", str(image_run))
        assert code == 0 and "records no image hashes" in err


class TestImagesCheckedAtPlanTime:
    @pytest.mark.parametrize(
        ("make", "expected"),
        [
            (lambda d: (d / "img1.png").write_bytes((d / "img1.png").read_bytes()[:80]), "img1.png: not a readable"),
            (lambda d: (d / "img1.png").write_bytes(b"\x89PNG nonsense"), "img1.png: not a readable image"),
            (lambda d: write_image(d / "img1.png", 1, size=20), "img1.png: 20 x 20 pixels; the suites need at least 32"),
            (lambda d: write_image(d / "img1.jpg", 1), "img1.jpg and img1.png in"),
            (lambda d: PIL.Image.new("1", (8000, 8000)).save(d / "big.png"), "big.png: 8000 x 8000 pixels, more than"),
        ],
        ids=["truncated", "corrupt", "too small", "duplicate stem", "too large"],
    )
    def test_exit_2_naming_the_file_and_nothing_written(self, images, capsys, make, expected):
        make(images)
        before = snapshot(images.parent)
        code, _, err = run_cli(capsys, "run", *TINY_SCALE, "--images", str(images), "--out", "run")
        assert code == 2, err
        assert "suite 'scale': images: " in err and expected in err and "Traceback" not in err
        assert snapshot(images.parent) == before and not Path("run").exists()


class TestOutProblems:
    def test_read_only_file_system_when_checked(self, fake_suites, capsys, monkeypatch):
        real = os.statvfs

        class ReadOnly:
            def __init__(self, path):
                self.f_flag = real(path).f_flag | os.ST_RDONLY

        monkeypatch.setattr(os, "statvfs", ReadOnly)
        code, _, err = run_cli(capsys, "run", *QUICK, "--out", "run")
        assert code == 2 and "is on a read-only file system" in err and not Path("run").exists()

    @pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC, errno.EACCES])
    def test_a_folder_that_cannot_be_made(self, fake_suites, capsys, monkeypatch, error):
        """The file system refuses only when the folder is made (it went read-only, filled up): exit 2, no traceback."""
        real_mkdir = os.mkdir

        def refuse(path, *args, **kwargs):
            if Path(path).name == "run":
                raise OSError(error, os.strerror(error), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", refuse)
        code, _, err = run_cli(capsys, "run", *QUICK, "--out", "run")
        assert code == 2 and f"--out run: cannot make the run folder: [Errno {error}] {os.strerror(error)}" in err

    def test_the_api_raises_a_usage_error(self, fake_suites):
        Path("f").write_text("")
        with pytest.raises(UsageError, match=r"out f/run: /.*/f is a file, so no folder can be made under it"):
            bench.run(suites="fake", interpolators="nearest", profile="quick", out="f/run")
        with pytest.raises(UsageError, match="seeds: expected at most 1000 seeds, got 1000000000000000000000"):
            bench.run(suites="fake", interpolators="nearest", profile="quick", seeds=10**21)
