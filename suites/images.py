"""Benchmark images: scikit-image's built-in images (offline) or a user's folder.

Images come back as float64 tensors ``(1, C, H, W)`` in ``[0, 1]`` (C = 1 for grey,
3 for colour), centre-cropped so that H and W are multiples of ``multiple``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import skimage.data
import skimage.io
import torch
from torch import Tensor

#: the built-in images the suites use by default (all ship with scikit-image)
BUILTIN_IMAGES = ("camera", "astronaut", "brick", "grass", "gravel", "coffee", "rocket", "coins")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _to_tensor(array: np.ndarray, multiple: int) -> Tensor:
    if array.dtype == bool:
        array = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64) / np.iinfo(array.dtype).max
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"image: expected a 2-D grey or 3-D colour array, got shape {array.shape}")
    array = array[..., :3]  # drop alpha
    h, w = (array.shape[0] // multiple) * multiple, (array.shape[1] // multiple) * multiple
    if h == 0 or w == 0:
        raise ValueError(f"image: {array.shape[:2]} is smaller than the crop multiple {multiple}")
    top, left = (array.shape[0] - h) // 2, (array.shape[1] - w) // 2
    array = array[top : top + h, left : left + w]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].clamp(0, 1)


def builtin_image(name: str, multiple: int = 1) -> Tensor:
    """The scikit-image image ``name`` as ``(1, C, H, W)`` float64."""
    if name not in BUILTIN_IMAGES:
        raise ValueError(f"image: unknown built-in image {name!r}; expected one of {list(BUILTIN_IMAGES)}")
    return _to_tensor(getattr(skimage.data, name)(), multiple)


def folder_images(folder: str | Path, multiple: int = 1) -> dict[str, Tensor]:
    """Every image file in ``folder`` (by suffix), keyed by file stem, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"images: expected a folder of images, got {str(folder)!r} (not a directory)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"images: no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    return {p.stem: _to_tensor(skimage.io.imread(p), multiple) for p in files}


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


@functools.lru_cache(maxsize=None)
def _cached_images(folder: str | None, name: str | None, multiple: int) -> dict[str, Tensor]:
    if folder is not None:
        return load_images(folder=folder, multiple=multiple)
    return load_images([name], multiple=multiple)


def cached_image(name: str, folder: str | Path | None = None, multiple: int = 1) -> Tensor:
    """The image ``name`` (built-in, or a file stem in ``folder``), loaded once per process; do not modify it."""
    images = _cached_images(str(folder), None, multiple) if folder is not None else _cached_images(None, name, multiple)
    if name not in images:
        raise ValueError(f"image: {name!r} not in {str(folder)!r}; it has {sorted(images)}")
    return images[name]


def image_names(count: int | None = None, folder: str | Path | None = None, multiple: int = 1) -> list[str]:
    """The first ``count`` image names (all for ``None``): :data:`BUILTIN_IMAGES` in order, or ``folder``'s sorted stems.

    A folder is read (once per process, through :func:`cached_image`'s cache), so a folder
    without usable images raises ``ValueError`` here.
    """
    names = list(_cached_images(str(folder), None, multiple)) if folder is not None else list(BUILTIN_IMAGES)
    return names if count is None else names[:count]
