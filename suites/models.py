"""The classification networks of the classify suite: Table 3 of the ESTN paper with its "EST layers".

Table 3 (Shamsolmoali & Zareapoor) gives one network per dataset; they share a
layout and differ in width. With ``w = (w1, w2, w3, w4, w5)`` (a column of
:data:`TABLE3_WIDTHS`) and a ``(B, C, 32, 32)`` input::

    3x3 conv w1, 3x3 conv w1, EST layer, 3x3 conv w1, 2x2 max-pool, dropout      32 -> 16
    3x3 conv w2, 3x3 conv w2, EST layer, 3x3 conv w2, 2x2 max-pool, dropout      16 -> 8
    3x3 conv w3 (no padding: 8 -> 6), 1x1 conv w4, EST layer, 1x1 conv w5         8 -> 6
    global average pool 6x6 -> 1x1, FC w5 -> 10

Every convolution is followed by batch normalization and ReLU (the table's
"followed by ReLU activations and batch normalization"; we use the usual
conv -> BN -> ReLU order). The "6x6" of the table fixes the one unpadded
convolution; all others are padded ("same"). This is the "conv-large" network of
Laine & Aila (2017), which Table 3's CelebA column reproduces exactly.

An EST layer (:class:`ESTLayer`) is a spatial transformer: a small localization
head predicts an affine ``theta (B, 2, 3)``, initialized to the identity (zero
last-layer weights, identity bias), ``F.affine_grid`` turns it into a sampling
grid of the feature map's own size, and any registered interpolator samples the
feature map on it. With ``align_corners`` equal to the interpolator's, the
identity grid hits pixel centres exactly, so a fresh EST layer is the identity
for bilinear (and for every interpolator that is exact on the lattice).

The ESTN network additionally reparametrizes its convolutions to be
norm-preserving (``interpolators.norm_preserving``, Sec. 3.2 of the paper); the
"w/o norm" ablation turns that off.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import interpolators

#: Table 3's widths per dataset column: (block 1, block 2, 3x3 conv of block 3, first 1x1, last 1x1 = FC input)
TABLE3_WIDTHS: dict[str, tuple[int, int, int, int, int]] = {
    "fashion_mnist": (32, 64, 64, 64, 64),
    "svhn": (64, 128, 128, 128, 128),
    "celeba": (128, 256, 512, 256, 128),
}
#: which Table 3 column each dataset of the suite uses (MNIST, MNIST-5k and digits borrow the F-MNIST network)
NETWORK_FOR_DATASET: dict[str, str] = {
    "mnist5k": "fashion_mnist",
    "digits": "fashion_mnist",
    "mnist": "fashion_mnist",
    "fashion_mnist": "fashion_mnist",
    "svhn": "svhn",
    "celeba": "celeba",
}


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")


def identity_theta(batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """The identity affine ``(batch, 2, 3)`` in ``F.affine_grid``'s normalized coordinates."""
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device, dtype=dtype)
    return eye.expand(batch, 2, 3)


def affine_transform(input: Tensor, theta: Tensor, sampler: nn.Module) -> Tensor:
    """Sample ``input (B, C, H, W)`` with ``sampler`` on the grid of the affine ``theta (B, 2, 3)``.

    Output pixel centre ``q`` (normalized ``(x, y)`` in ``[-1, 1]``) reads the input at
    ``theta @ [q, 1]``. The grid uses the sampler's ``align_corners`` (default
    ``False``), so the identity ``theta`` lands exactly on the input's pixel centres.
    Returns ``(B, C, H, W)``.

    >>> import torch, interpolators
    >>> x = torch.rand(2, 3, 5, 7)
    >>> y = affine_transform(x, identity_theta(2), interpolators.create("bilinear"))
    >>> torch.allclose(x, y, atol=1e-6)
    True
    """
    if theta.ndim != 3 or theta.shape[1:] != (2, 3) or theta.shape[0] != input.shape[0]:
        raise ValueError(f"theta: expected shape ({input.shape[0]}, 2, 3), got {tuple(theta.shape)}")
    align_corners = bool(getattr(sampler, "align_corners", False))
    grid = F.affine_grid(theta.to(input.dtype), list(input.shape), align_corners=align_corners)
    return sampler(input, grid)


class LocalizationHead(nn.Module):
    """Predicts an affine ``theta (B, 2, 3)`` from a feature map ``(B, C, H, W)``; starts at the identity.

    conv 3x3 (C -> ``hidden``) -> ReLU -> adaptive average pool 4x4 -> FC (16 ``hidden`` -> 32)
    -> ReLU -> FC (32 -> 6). The last FC has zero weights and the identity as bias,
    so at initialization theta is the identity for every input.
    """

    def __init__(self, in_channels: int, hidden: int = 16) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("hidden", hidden)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(16 * hidden, 32),
            nn.ReLU(inplace=True),
        )
        self.theta = nn.Linear(32, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(identity_theta(1).reshape(6))

    def forward(self, x: Tensor) -> Tensor:
        return self.theta(self.features(x)).view(-1, 2, 3)


class ESTLayer(nn.Module):
    """A spatial transformer ("EST layer" of Table 3): localization head -> affine grid -> interpolator.

    Args:
        channels: channels ``C`` of the feature map it transforms.
        sampler: an interpolator (``interpolators.create(...)``) or any module with
            ``grid_sample``'s contract.

    Shape:
        ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, sampler: nn.Module) -> None:
        super().__init__()
        if not isinstance(sampler, nn.Module):
            raise TypeError(f"sampler: expected an nn.Module with grid_sample's contract, got {type(sampler).__name__}")
        self.localization = LocalizationHead(channels)
        self.sampler = sampler
        #: the last predicted affine, kept for inspection (detached)
        self.last_theta: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        theta = self.localization(x)
        self.last_theta = theta.detach()
        return affine_transform(x, theta, self.sampler)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, padding: int) -> nn.Sequential:
    """``Conv2d`` (no bias) -> ``BatchNorm2d`` -> ``ReLU``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def apply_norm_preserving(model: nn.Module, exclude: tuple[type[nn.Module], ...] = (LocalizationHead,)) -> int:
    """Make every ungrouped ``Conv2d`` of ``model`` norm-preserving (outside ``exclude`` modules).

    Registers ``interpolators.norm_preserving``'s parametrization on each weight, so the
    optimizer trains the raw weight and the forward pass sees the projected one.
    Returns the number of convolutions changed.
    """
    from interpolators.norm_preserving import norm_preserving

    skip: set[int] = set()
    for module in model.modules():
        if isinstance(module, exclude):
            skip.update(id(m) for m in module.modules())
    count = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Conv2d) and module.groups == 1 and id(module) not in skip:
            norm_preserving(module)
            count += 1
    return count


class Table3Net(nn.Module):
    """One column of Table 3: nine convolutions, three EST layers, global average pool, FC.

    Args:
        in_channels: image channels (1 for grey, 3 for colour).
        num_classes: outputs of the last FC (10 in Table 3).
        widths: ``(w1, w2, w3, w4, w5)``, a column of :data:`TABLE3_WIDTHS`.
        interpolator: registered interpolator name for the EST layers, or ``None``
            for the plain CNN without EST layers.
        interpolator_hparams: hyperparameters for ``interpolators.create``.
        norm_preserving: reparametrize the nine convolutions to be norm-preserving.
        dropout: dropout probability after each max-pool.

    Shape:
        ``(B, in_channels, H, W)`` with ``H, W >= 12`` (32 x 32 in the paper) -> logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int, int, int, int] = TABLE3_WIDTHS["fashion_mnist"],
        interpolator: str | None = "bilinear",
        interpolator_hparams: dict[str, Any] | None = None,
        norm_preserving: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("num_classes", num_classes)
        if len(widths) != 5:
            raise ValueError(f"widths: expected 5 widths (a column of Table 3), got {widths!r}")
        for width in widths:
            _check_positive_int("widths", width)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        w1, w2, w3, w4, w5 = widths
        hparams = dict(interpolator_hparams or {})

        def est(channels: int) -> nn.Module:
            if interpolator is None:
                return nn.Identity()
            return ESTLayer(channels, interpolators.create(interpolator, **hparams))

        self.features = nn.Sequential(
            conv_bn_relu(in_channels, w1, 3, 1),
            conv_bn_relu(w1, w1, 3, 1),
            est(w1),
            conv_bn_relu(w1, w1, 3, 1),
            nn.MaxPool2d(2, 2),
            nn.Dropout(dropout),
            conv_bn_relu(w1, w2, 3, 1),
            conv_bn_relu(w2, w2, 3, 1),
            est(w2),
            conv_bn_relu(w2, w2, 3, 1),
            nn.MaxPool2d(2, 2),
            nn.Dropout(dropout),
            conv_bn_relu(w2, w3, 3, 0),
            conv_bn_relu(w3, w4, 1, 0),
            est(w4),
            conv_bn_relu(w4, w5, 1, 0),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(w5, num_classes)
        if norm_preserving:
            apply_norm_preserving(self)

    @property
    def est_layers(self) -> list[ESTLayer]:
        return [m for m in self.modules() if isinstance(m, ESTLayer)]

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or min(x.shape[-2:]) < 12:
            raise ValueError(f"x: expected (B, C, H, W) with H, W >= 12, got shape {tuple(x.shape)}")
        return self.classifier(self.features(x))


class TimmSTN(nn.Module):
    """A timm backbone behind one EST layer on the input (the suite's extension).

    ``timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)``;
    never downloads weights.
    """

    def __init__(
        self,
        name: str,
        in_channels: int = 1,
        num_classes: int = 10,
        interpolator: str | None = "bilinear",
        interpolator_hparams: dict[str, Any] | None = None,
        norm_preserving: bool = False,
    ) -> None:
        super().__init__()
        import timm

        if not isinstance(name, str) or not timm.is_model(name):
            raise ValueError(f"backbone: expected a timm model name (timm.list_models()), got {name!r}")
        self.est = (
            nn.Identity()
            if interpolator is None
            else ESTLayer(in_channels, interpolators.create(interpolator, **dict(interpolator_hparams or {})))
        )
        self.backbone = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
        if norm_preserving:
            apply_norm_preserving(self.backbone)

    @property
    def est_layers(self) -> list[ESTLayer]:
        return [m for m in self.modules() if isinstance(m, ESTLayer)]

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.est(x))


def build_model(
    dataset: str,
    in_channels: int,
    num_classes: int,
    interpolator: str | None,
    interpolator_hparams: dict[str, Any] | None = None,
    norm_preserving: bool = False,
    backbone: str = "table3",
) -> nn.Module:
    """The suite's network for ``dataset``: Table 3's column for it, or ``"timm:NAME"`` behind one EST layer.

    >>> net = build_model("digits", 1, 10, "bilinear")
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """
    if not isinstance(backbone, str):
        raise TypeError(f"backbone: expected 'table3' or 'timm:NAME', got {backbone!r}")
    if backbone.startswith("timm:"):
        return TimmSTN(backbone[5:], in_channels, num_classes, interpolator, interpolator_hparams, norm_preserving)
    if backbone != "table3":
        raise ValueError(f"backbone: expected 'table3' or 'timm:NAME', got {backbone!r}")
    if dataset not in NETWORK_FOR_DATASET:
        raise ValueError(f"dataset: expected one of {sorted(NETWORK_FOR_DATASET)}, got {dataset!r}")
    widths = TABLE3_WIDTHS[NETWORK_FOR_DATASET[dataset]]
    return Table3Net(in_channels, num_classes, widths, interpolator, interpolator_hparams, norm_preserving)
