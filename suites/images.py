"""Benchmark images: scikit-image's built-in images (offline) or a user's folder.

Images come back as float64 tensors ``(1, C, H, W)`` in ``[0, 1]`` (C = 1 for grey,
3 for colour), centre-cropped so that H and W are multiples of ``multiple``.

A folder's images are checked when they are read (at plan time, since the suites
name their cells by image): every file with an image suffix must decode to one
2-D image (a corrupt or truncated file, a multi-frame TIFF or non-finite pixels
are a ``ValueError`` naming the file); at least :data:`MIN_IMAGE_SIDE` pixels a
side and at most :data:`MAX_IMAGE_PIXELS` pixels (checked from the file's header,
before decoding); channels: grey and RGB are kept, an alpha channel is dropped
(grey+alpha becomes grey, RGBA becomes RGB); two files with the same stem
(``x.png`` beside ``x.jpg``) are refused, since cells name images by stem.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np
import PIL.Image
import skimage.data
import skimage.io
import torch
from torch import Tensor

#: the built-in images the suites use by default (all ship with scikit-image)
BUILTIN_IMAGES = ("camera", "astronaut", "brick", "grass", "gravel", "coffee", "rocket", "coins")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: the fewest pixels a side an image may have: the gradients suite needs 8 benchmark-input pixels a side
#: after its 4x downsampling (the scale and rotation suites need fewer)
MIN_IMAGE_SIDE = 32
#: the most pixels an image may have (4096 x 4096): larger ones are refused before they are decoded (as float64
#: RGB such an image takes 400 MB; the suites crop or downsample what they read to at most 512 x 512 pixels)
MAX_IMAGE_PIXELS = 4096 * 4096


def _to_tensor(array: np.ndarray, multiple: int, where: str = "image") -> Tensor:
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        array = array[..., :-1]  # drop alpha: grey+alpha -> grey, RGBA -> RGB
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{where}: expected a grey, grey+alpha, RGB or RGBA image, got an array of shape "
                         f"{array.shape}")
    if array.dtype == bool:
        array = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64) / np.iinfo(array.dtype).max
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: has non-finite pixels (NaN or infinite)")
    h, w = (array.shape[0] // multiple) * multiple, (array.shape[1] // multiple) * multiple
    if h == 0 or w == 0:
        raise ValueError(f"{where}: {array.shape[:2]} is smaller than the crop multiple {multiple}")
    top, left = (array.shape[0] - h) // 2, (array.shape[1] - w) // 2
    array = array[top : top + h, left : left + w]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].clamp(0, 1)


def builtin_image(name: str, multiple: int = 1) -> Tensor:
    """The scikit-image image ``name`` as ``(1, C, H, W)`` float64."""
    if name not in BUILTIN_IMAGES:
        raise ValueError(f"image: unknown built-in image {name!r}; expected one of {list(BUILTIN_IMAGES)}")
    return _to_tensor(getattr(skimage.data, name)(), multiple)


def read_image(path: str | Path) -> np.ndarray:
    """The pixels of the image file ``path`` (``skimage.io.imread``), checked; raises ``ValueError`` naming it.

    Its size is read from the header first (Pillow, which does not decode the pixels),
    so that an image of more than :data:`MAX_IMAGE_PIXELS` is refused without
    allocating it; one of fewer than :data:`MIN_IMAGE_SIDE` pixels a side, one of
    several frames and one that cannot be decoded are refused too.
    """
    path = Path(path)
    try:
        with PIL.Image.open(path) as header:
            (width, height), frames = header.size, getattr(header, "n_frames", 1)
    except PIL.Image.DecompressionBombError as err:
        raise ValueError(f"images: {path}: too large ({err}); at most {MAX_IMAGE_PIXELS} pixels") from None
    except (OSError, ValueError, SyntaxError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"images: {path}: not a readable image ({type(err).__name__}: {err})") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"images: {path}: {width} x {height} pixels, more than the {MAX_IMAGE_PIXELS} "
                         f"(4096 x 4096) an image may have; downscale it")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(f"images: {path}: {width} x {height} pixels; the suites need at least "
                         f"{MIN_IMAGE_SIDE} a side")
    if frames != 1:
        raise ValueError(f"images: {path}: holds {frames} frames; expected one image")
    try:
        array = np.asarray(skimage.io.imread(path))
    except Exception as err:  # noqa: BLE001  any decoder's error (truncated data, a bad chunk) names the file
        raise ValueError(f"images: {path}: not a readable image ({type(err).__name__}: {err})") from None
    if array.ndim < 2 or array.shape[:2] != (height, width):
        raise ValueError(f"images: {path}: decoded to an array of shape {array.shape}, expected {height} x {width}")
    return array


def image_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (by suffix) sorted by name; raises ``ValueError`` for two files of one stem."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"images: expected a folder of images, got {str(folder)!r} (not a directory)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise ValueError(f"images: {stems[path.stem].name} and {path.name} in {str(folder)!r} share the name "
                             f"{path.stem!r}, which names the image in the results; rename or remove one")
        stems[path.stem] = path
    return files


def folder_images(folder: str | Path, multiple: int = 1) -> dict[str, Tensor]:
    """Every image file in ``folder`` (by suffix), keyed by file stem, sorted by name, each checked (module doc)."""
    files = image_files(folder)
    if not files:
        raise ValueError(f"images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    return {p.stem: _to_tensor(read_image(p), multiple, where=f"images: {p}") for p in files}


def folder_image_hashes(folder: str | Path) -> dict[str, str]:
    """``{file name: sha256 of its bytes}`` of every image file in ``folder`` (what a run records of its inputs)."""
    hashes = {}
    for path in image_files(folder):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        hashes[path.name] = digest.hexdigest()
    return hashes


def builtin_image_hashes() -> dict[str, str]:
    """``{name: sha256}`` of every built-in image's decoded pixels (shape, dtype and bytes; ~50 ms for all)."""
    hashes = {}
    for name in BUILTIN_IMAGES:
        array = np.ascontiguousarray(getattr(skimage.data, name)())
        digest = hashlib.sha256(f"{array.shape} {array.dtype}\n".encode())
        digest.update(array.tobytes())
        hashes[name] = digest.hexdigest()
    return hashes


def load_images(names: list[str] | None = None, folder: str | Path | None = None, multiple: int = 1) -> dict[str, Tensor]:
    """Images by name: from ``folder`` if given (all of them, or ``names`` among them), else built-in."""
    if folder is not None:
        images = folder_images(folder, multiple)
        if names:
            missing = sorted(set(names) - set(images))
            if missing:
                raise ValueError(f"images: {missing} not in {str(folder)!r}; it has {sorted(images)}")
            images = {n: images[n] for n in names}
        return images
    return {n: builtin_image(n, multiple) for n in (names or BUILTIN_IMAGES)}


def _signature(folder: str) -> tuple:
    """The names, sizes and modification times of ``folder``'s files: a replaced file is loaded again."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        return tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
    except OSError:
        return ()


@functools.lru_cache(maxsize=32)
def _cached_images(folder: str | None, name: str | None, multiple: int, signature: tuple = ()) -> dict[str, Tensor]:
    if folder is not None:
        return load_images(folder=folder, multiple=multiple)
    return load_images([name], multiple=multiple)


def _folder_images_cached(folder: str | Path, multiple: int) -> dict[str, Tensor]:
    return _cached_images(str(folder), None, multiple, _signature(str(folder)))


def cached_image(name: str, folder: str | Path | None = None, multiple: int = 1) -> Tensor:
    """The image ``name`` (built-in, or a file stem in ``folder``), loaded once per process; do not modify it."""
    images = _folder_images_cached(folder, multiple) if folder is not None else _cached_images(None, name, multiple)
    if name not in images:
        raise ValueError(f"image: {name!r} not in {str(folder)!r}; it has {sorted(images)}")
    return images[name]


def image_names(count: int | None = None, folder: str | Path | None = None, multiple: int = 1) -> list[str]:
    """The first ``count`` image names (all for ``None``): :data:`BUILTIN_IMAGES` in order, or ``folder``'s sorted stems.

    A folder is read (once per process, through :func:`cached_image`'s cache), so a folder
    without usable images raises ``ValueError`` here.
    """
    names = list(_folder_images_cached(folder, multiple)) if folder is not None else list(BUILTIN_IMAGES)
    return names if count is None else names[:count]
