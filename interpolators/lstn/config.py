"""L-STN's hyperparameters: one frozen, validated config that the module, the functional and every backend take."""

from __future__ import annotations

import dataclasses
import math
import warnings

from interpolators._extension import BACKENDS, Backend
from interpolators.base import PADDING_MODES, PaddingMode, check_choice, check_number

REFERENCE = (
    "Jiang, Sun, Tagliasacchi, Trulls, Yi, Linearized Multi-Sampling for Differentiable Image "
    "Transformation, ICCV 2019 (arXiv 1901.07124); vcg-uvic/linearized_multisampling_release"
)

#: With ``K - 1`` Gaussian auxiliary points the inverse normal matrix of the plane fit (an inverse Wishart in its
#: slopes) has a finite mean only for ``K >= 6`` and a finite variance only for ``K >= 8``: below 6 the intercept
#: (and so the value) has no finite mean error, below 8 rare pixels still land far outside the image's range
#: (docs/methods/lstn.md, "Small K"). ``num_samples`` below ``MIN_SAMPLES`` is refused, below ``STABLE_SAMPLES``
#: warned about.
MIN_SAMPLES = 6
STABLE_SAMPLES = 8
#: the largest ``num_samples`` accepted: time grows linearly with it (the reference's default is 8)
MAX_SAMPLES = 64


@dataclasses.dataclass(frozen=True)
class LSTNConfig:
    """L-STN's hyperparameters (defaults: the reference implementation's).

    Args:
        num_samples: ``K``, the sampling point plus ``K - 1`` random auxiliary points (``6 <= K <= 64``; a warning
            below 8).
        noise_strength: standard deviation of the first offset term, in half output pixels (``>= 0``).
        push_away: add a second offset term of one input pixel standard deviation.
        fixed_bias: output bilinear's value instead of bilinear's plus the plane's intercept.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``, as in ``grid_sample``.
        align_corners: ``grid_sample``'s coordinate convention.
        backend: ``"auto"`` (the operator where it runs, else the eager path with a warning), ``"operator"`` or
            ``"eager"``; all draw the same offsets from the same generator state.
    """

    num_samples: int = 8
    noise_strength: float = 0.5
    push_away: bool = True
    fixed_bias: bool = False
    padding_mode: PaddingMode = "zeros"
    align_corners: bool = False
    backend: Backend = "auto"

    def __post_init__(self) -> None:
        check_number("num_samples", self.num_samples, integer=True, maximum=MAX_SAMPLES, why="time grows with it")
        if self.num_samples < MIN_SAMPLES:
            raise ValueError(
                f"num_samples: expected at least {MIN_SAMPLES} (with fewer auxiliary points the plane's intercept has "
                f"no finite mean error: values far outside the image's range), got {self.num_samples}"
            )
        if self.num_samples < STABLE_SAMPLES:
            warnings.warn(
                f"lstn: num_samples={self.num_samples} leaves the plane's intercept with infinite variance: rare pixels "
                f"get values far outside the image's range (use num_samples >= {STABLE_SAMPLES}; fixed_bias=True keeps the value "
                f"bilinear's)",
                RuntimeWarning,
                stacklevel=3,
            )
        check_number("noise_strength", self.noise_strength, minimum=0)
        for name in ("push_away", "fixed_bias", "align_corners"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name}: expected a bool, got {value!r} ({type(value).__name__})")
        if self.noise_strength == 0 and not self.push_away:
            raise ValueError(
                "noise_strength: expected > 0 when push_away is False (otherwise every auxiliary point is the "
                f"sampling point itself and the plane fit is singular), got {self.noise_strength!r}"
            )
        check_choice("padding_mode", self.padding_mode, PADDING_MODES)
        check_choice("backend", self.backend, BACKENDS)

    def offset_std(self, size: tuple[int, int], out: tuple[int, int]) -> tuple[float, float]:
        """The offsets' standard deviation ``(x, y)`` in normalized units for an input ``(H, W)`` and output ``(Ho, Wo)``.

        ``N(0, (s / Wo)^2) + N(0, (2 / W)^2)`` (``s = noise_strength``; the second term with ``push_away``) has the
        variance of the two, so one normal per axis draws both terms of the reference.
        """
        (h, w), (ho, wo) = size, out
        push = 1.0 if self.push_away else 0.0
        return (
            math.sqrt((self.noise_strength / wo) ** 2 + push * (2.0 / w) ** 2),
            math.sqrt((self.noise_strength / ho) ** 2 + push * (2.0 / h) ** 2),
        )
