"""Benchmark images: the shared per-process cache the scale, rotation and gradients suites load through."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.io
import torch

from suites.images import BUILTIN_IMAGES, cached_image, image_names, load_images


def write_png(path, value: int, size: tuple[int, int] = (10, 13)) -> None:
    skimage.io.imsave(path, np.full(size, value, dtype=np.uint8), check_contrast=False)


class TestCachedImage:
    def test_smoke_builtin_is_loaded_once(self):
        a = cached_image("camera", multiple=4)
        assert a.shape == (1, 1, 512, 512) and a.dtype == torch.float64
        assert cached_image("camera", multiple=4) is a  # one load per process
        assert torch.equal(a, load_images(["camera"], multiple=4)["camera"])

    def test_folder_by_stem(self, tmp_path):
        write_png(tmp_path / "b.png", 255)
        write_png(tmp_path / "a.png", 51)
        image = cached_image("a", tmp_path, multiple=4)
        assert image.shape == (1, 1, 8, 12)  # centre-cropped to multiples of 4
        assert torch.allclose(image, torch.full_like(image, 51 / 255))
        assert cached_image("b", str(tmp_path), multiple=4).max().item() == 1.0

    def test_exception_unknown_name(self, tmp_path):
        write_png(tmp_path / "a.png", 0)
        with pytest.raises(ValueError, match="'nope' not in"):
            cached_image("nope", tmp_path)
        with pytest.raises(ValueError, match="unknown built-in image 'nope'"):
            cached_image("nope")


class TestImageNames:
    def test_builtin_order_and_count(self):
        assert image_names(3) == list(BUILTIN_IMAGES[:3])
        assert image_names(None) == list(BUILTIN_IMAGES)

    def test_folder_sorted_stems(self, tmp_path):
        for name in ("c", "a", "b"):
            write_png(tmp_path / f"{name}.png", 10)
        (tmp_path / "notes.txt").write_text("not an image")
        assert image_names(None, tmp_path) == ["a", "b", "c"]
        assert image_names(2, tmp_path) == ["a", "b"]

    def test_exception_folder_without_images(self, tmp_path):
        with pytest.raises(ValueError, match="no image files"):
            image_names(None, tmp_path)
