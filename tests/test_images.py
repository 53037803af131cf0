"""Benchmark images: the shared per-process cache the scale, rotation and gradients suites load through."""

from __future__ import annotations

import hashlib

import numpy as np
import PIL.Image
import pytest
import skimage.data
import skimage.io
import torch

from suites.images import (
    BUILTIN_IMAGES,
    builtin_image_hashes,
    cached_image,
    folder_image_hashes,
    image_names,
    load_images,
)


def write_png(path, value: int, size: tuple[int, int] = (34, 45)) -> None:
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
        assert image.shape == (1, 1, 32, 44)  # centre-cropped to multiples of 4
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


class TestChecks:
    """What a folder's images must be (suites/images.py's docstring): each refusal names the file."""

    def test_grey_alpha_becomes_grey_and_rgba_rgb(self, tmp_path):
        grey = np.arange(40 * 50, dtype=np.uint8).reshape(40, 50)
        alpha = np.full_like(grey, 7)
        PIL.Image.fromarray(np.stack([grey, alpha], -1), mode="LA").save(tmp_path / "la.png")
        rgb = np.stack([grey, 255 - grey, grey // 2], -1)
        PIL.Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), mode="RGBA").save(tmp_path / "rgba.png")
        images = load_images(folder=tmp_path)
        assert images["la"].shape == (1, 1, 40, 50)
        torch.testing.assert_close(images["la"][0, 0], torch.from_numpy(grey / 255.0))
        assert images["rgba"].shape == (1, 3, 40, 50)
        torch.testing.assert_close(images["rgba"][0].permute(1, 2, 0), torch.from_numpy(rgb / 255.0))

    def test_sixteen_bit_and_float(self, tmp_path):
        deep = (np.arange(40 * 40).reshape(40, 40) * 40).astype(np.uint16)
        skimage.io.imsave(tmp_path / "deep.png", deep, check_contrast=False)
        torch.testing.assert_close(load_images(folder=tmp_path)["deep"][0, 0], torch.from_numpy(deep / 65535.0))

    @pytest.mark.parametrize(
        ("make", "match"),
        [
            (lambda d: (d / "a.png").write_bytes(b"not a png at all"), r"a.png: not a readable image"),
            (lambda d: (write_png(d / "a.png", 9), (d / "a.png").write_bytes((d / "a.png").read_bytes()[:60])),
             r"a.png: not a readable image"),  # the header is there, the pixels are cut off
            (lambda d: write_png(d / "a.png", 9, size=(16, 64)), r"a.png: 64 x 16 pixels; the suites need at least 32"),
            (lambda d: (write_png(d / "x.png", 9), write_png(d / "x.jpg", 9)),
             r"x.jpg and x.png in .* share the name 'x'"),
            (lambda d: PIL.Image.new("1", (8000, 8000)).save(d / "huge.png"),
             r"huge.png: 8000 x 8000 pixels, more than the 16777216 \(4096 x 4096\)"),
            (lambda d: _write_stack(d / "stack.tif"), r"stack.tif: holds 3 frames"),
        ],
        ids=["garbage", "truncated", "too small", "duplicate stem", "too large", "several frames"],
    )
    def test_refused_naming_the_file(self, tmp_path, monkeypatch, make, match):
        decoded = []
        real = skimage.io.imread
        monkeypatch.setattr(skimage.io, "imread", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
        make(tmp_path)
        with pytest.raises(ValueError, match=match):
            load_images(folder=tmp_path)
        assert not any("huge" in str(p) for p in decoded)  # refused from its header, never decoded

    def test_non_finite_pixels(self, tmp_path):
        image = np.full((40, 40), 0.5, dtype=np.float32)
        image[3, 4] = np.nan
        skimage.io.imsave(tmp_path / "f.tif", image, check_contrast=False)
        with pytest.raises(ValueError, match=r"f.tif: has non-finite pixels"):
            load_images(folder=tmp_path)

    def test_a_replaced_file_is_read_again(self, tmp_path):
        write_png(tmp_path / "a.png", 51)
        assert cached_image("a", tmp_path).max().item() == pytest.approx(0.2)
        write_png(tmp_path / "a.png", 255, size=(34, 46))
        assert cached_image("a", tmp_path).max().item() == 1.0  # not the cached first version


def _write_stack(path) -> None:
    frames = [PIL.Image.fromarray(np.full((40, 40), v, np.uint8)) for v in (0, 100, 200)]
    frames[0].save(path, save_all=True, append_images=frames[1:])


class TestHashes:
    def test_folder_hashes_are_the_files_sha256(self, tmp_path):
        write_png(tmp_path / "a.png", 9)
        (tmp_path / "notes.txt").write_text("not an image")
        assert folder_image_hashes(tmp_path) == {"a.png": hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()}

    def test_builtin_hashes_follow_the_pixels(self):
        hashes = builtin_image_hashes()
        assert list(hashes) == list(BUILTIN_IMAGES) and len(set(hashes.values())) == len(BUILTIN_IMAGES)
        camera = skimage.data.camera()
        expected = hashlib.sha256(f"{camera.shape} {camera.dtype}\n".encode() + camera.tobytes()).hexdigest()
        assert hashes["camera"] == expected
