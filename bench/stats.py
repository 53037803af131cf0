"""The statistics of the report, ``summary.csv``, the verdicts and ``bench compare``: one interval, one test.

Units. A value of a metric is one measurement of one *unit*: a seed and, where
the rows carry them, the :data:`REPLICATE_COLUMNS` (an image, an alignment
trial, ...). Everything else that identifies a row (suite, interpolator,
hyperparameters, the swept parameter, other parameters, metric) makes a group.

Interval. Per group, the mean and its 95% Student-t confidence interval,
``mean -+ t(0.975, n - 1) * s / sqrt(n)`` (``s`` the sample standard deviation
over the group's ``n`` units): ``summary.csv``'s ``ci_low``/``ci_high``, the ``±``
of the report's tables and the error bars of its plots.

Test. Two groups (two methods in a verdict, or one group in two runs) are
compared by the difference of their means, ``mean(b) - mean(a)``:

- a **paired t-test** (``scipy.stats.ttest_rel``) over the units both share, when
  both groups hold the same units (same images, trials and seeds: every method
  sees the same inputs and perturbations), and
- **Welch's t-test** (``scipy.stats.ttest_ind(equal_var=False)``) otherwise,

two-sided, significant when ``p < 0.05`` (:data:`ALPHA`; not corrected for the
number of comparisons), with the difference's 95% confidence interval from the
same t distribution. Special cases, each named in the result's ``test``:

- ``n = 1``: one unit on a side, no test;
- a difference within ``1e-9`` of the larger mean (:data:`TIE_TOLERANCE`) is a tie;
- differences without spread (deterministic): significant whenever non-zero;
- a metric's exact matches (:attr:`suites.base.Metric.exact`, e.g. PSNR's ceiling):
  both sides exact is a tie, one side all exact and the other never is a
  significant "exact match", a mix is not tested.

Units are treated as independent draws; the images are a fixed set, so a
verdict speaks about them, not about all images.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from suites.base import Metric

#: columns whose values are replicates of a measurement (with ``seed``), pooled by the statistics
REPLICATE_COLUMNS = frozenset({"image", "images", "sample", "draw", "trial", "repeat", "template"})
#: the confidence level of every interval
CONFIDENCE = 0.95
#: the significance level of every test
ALPHA = 0.05
#: a difference this small relative to the larger mean is a tie (floating-point noise)
TIE_TOLERANCE = 1e-9
#: the outcomes of :func:`compare_groups` that test nothing (a method they leave behind is not "tied")
UNTESTED = frozenset({"no data", "one measurement a side", "some exact, not tested"})

PAIRED = "paired t"
WELCH = "Welch t"


def t_quantile(p: float, dof: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``dof`` degrees of freedom.

    >>> round(t_quantile(0.975, 2), 4)  # the t table's two-sided 95% value for n = 3
    4.3027
    """
    from scipy.stats import t

    return float(t.ppf(p, dof))


def replicate_columns(frame: pd.DataFrame) -> list[str]:
    """The unit columns of ``frame``: ``seed`` and the :data:`REPLICATE_COLUMNS` it has."""
    return [c for c in frame.columns if c == "seed" or c in REPLICATE_COLUMNS]


def half_width(values: Any, confidence: float = CONFIDENCE) -> float:
    """Half the t-interval of the mean of ``values``: ``t((1 + confidence) / 2, n - 1) s / sqrt(n)`` (NaN for n < 2).

    >>> round(half_width([1.0, 2.0, 3.0]), 4)  # 4.3027 * 1 / sqrt(3)
    2.4841
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return math.nan
    return t_quantile((1 + confidence) / 2, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)


@dataclasses.dataclass(frozen=True)
class Difference:
    """``mean(b) - mean(a)``, its 95% interval ``low..high``, the test's ``p`` and name, and the verdict.

    ``diff`` is ``+-inf`` for an exact match against a non-exact side; ``low``, ``high`` and
    ``p`` are NaN where the test does not give them.
    """

    diff: float
    low: float
    high: float
    p: float
    test: str
    n_a: int
    n_b: int
    significant: bool

    @property
    def n(self) -> str:
        return str(self.n_a) if self.n_a == self.n_b else f"{self.n_a}/{self.n_b}"

    def describe(self, unit: str = "") -> str:
        """E.g. ``+3.13 dB [2.0, 4.3], p = 0.004 (paired t, n = 3): significant``."""
        unit = f" {unit}" if unit else ""
        if math.isinf(self.diff):
            return f"exact match ({self.test}): significant"
        text = f"{self.diff:+.3g}{unit}"
        if math.isfinite(self.low) and self.low != self.high:
            text += f" [{self.low:.3g}, {self.high:.3g}]"
        if math.isfinite(self.p):
            text += f", {format_p(self.p)} ({self.test}, n = {self.n})"
        else:
            text += f" ({self.test}, n = {self.n})"
        return text + (": significant" if self.significant else ": not significant")


def format_p(p: float) -> str:
    """``p < 0.001`` or ``p = 0.034``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.2f}"


def _series(values: Any) -> pd.Series:
    series = values if isinstance(values, pd.Series) else pd.Series(list(values))
    return series.astype(float)


def compare_groups(a: Any, b: Any, metric: Metric | None = None) -> Difference:
    """Test ``mean(b) - mean(a)`` as the module docstring says; ``a`` and ``b`` are values indexed by unit.

    Pass pandas Series indexed by the units (tuples of the replicate columns) to
    let the test pair them; sequences are compared unpaired (Welch).

    >>> a = pd.Series([1.0, 2.0, 3.0], index=["x", "y", "z"])
    >>> d = compare_groups(a, a + [0.9, 1.0, 1.1])
    >>> round(d.diff, 6), d.test, d.significant
    (1.0, 'paired t', True)
    """
    a, b = _series(a), _series(b)
    n_a, n_b = len(a), len(b)

    def result(diff, low, high, p, test, significant) -> Difference:
        return Difference(float(diff), float(low), float(high), float(p), test, n_a, n_b, bool(significant))

    if n_a == 0 or n_b == 0:
        return result(math.nan, math.nan, math.nan, math.nan, "no data", False)
    if metric is not None and metric.exact is not None:
        exact_a, exact_b = a.map(metric.is_exact), b.map(metric.is_exact)
        if exact_a.all() and exact_b.all():
            return result(0.0, math.nan, math.nan, math.nan, "both exact", False)
        b_better = 1.0 if metric.better != "lower" else -1.0  # the sign of b - a when b is the better side
        if exact_b.all() and not exact_a.any():
            return result(b_better * math.inf, math.nan, math.nan, math.nan, "exact match", True)
        if exact_a.all() and not exact_b.any():
            return result(-b_better * math.inf, math.nan, math.nan, math.nan, "exact match", True)
        if exact_a.any() or exact_b.any():
            return result(b.mean() - a.mean(), math.nan, math.nan, math.nan, "some exact, not tested", False)

    diff = float(b.mean() - a.mean())
    scale = max(abs(float(a.mean())), abs(float(b.mean())))
    if abs(diff) <= TIE_TOLERANCE * scale or diff == 0:
        return result(0.0, 0.0, 0.0, 1.0, "equal", False)
    deterministic = metric is not None and metric.deterministic
    if deterministic and a.nunique() <= 1 and b.nunique() <= 1:
        return result(diff, diff, diff, math.nan, "deterministic", True)
    paired = (
        a.index.is_unique and b.index.is_unique and n_a == n_b and n_a >= 2 and set(a.index) == set(b.index)
        and not isinstance(a.index, pd.RangeIndex)
    )
    from scipy import stats

    if paired:
        a = a.reindex(b.index)
        sd = float((b - a).std(ddof=1))
        if sd <= TIE_TOLERANCE * abs(diff):  # no spread beyond rounding: the same difference on every unit
            return result(diff, diff, diff, 0.0, PAIRED, True)
        half = t_quantile((1 + CONFIDENCE) / 2, n_a - 1) * sd / math.sqrt(n_a)
        p = float(stats.ttest_rel(b.to_numpy(), a.to_numpy()).pvalue)
        return result(diff, diff - half, diff + half, p, PAIRED, p < ALPHA)
    if n_a < 2 or n_b < 2:
        return result(diff, math.nan, math.nan, math.nan, "one measurement a side", False)
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    se2 = va / n_a + vb / n_b
    if math.sqrt(se2) <= TIE_TOLERANCE * abs(diff):
        return result(diff, diff, diff, 0.0, WELCH, True)
    dof = se2**2 / ((va / n_a) ** 2 / (n_a - 1) + (vb / n_b) ** 2 / (n_b - 1))
    half = t_quantile((1 + CONFIDENCE) / 2, dof) * math.sqrt(se2)
    p = float(stats.ttest_ind(b.to_numpy(), a.to_numpy(), equal_var=False).pvalue)
    return result(diff, diff - half, diff + half, p, WELCH, p < ALPHA)


# --- groups and verdicts -----------------------------------------------------------------------------


def unit_values(rows: pd.DataFrame, units: list[str]) -> pd.Series:
    """``rows``' values indexed by unit (a tuple of the ``units`` columns; one column: its value)."""
    if not units:
        return rows["value"].astype(float).reset_index(drop=True)
    index = pd.MultiIndex.from_frame(rows[units].astype(str)) if len(units) > 1 else rows[units[0]].astype(str)
    return pd.Series(rows["value"].astype(float).to_numpy(), index=index)


@dataclasses.dataclass(frozen=True)
class GroupStats:
    """One group's mean, the half-width of its 95% t-interval, ``n`` units, and how many were exact matches."""

    mean: float
    half: float
    n: int
    n_exact: int

    @property
    def all_exact(self) -> bool:
        return self.n > 0 and self.n_exact == self.n

    def text(self) -> str:
        """``exact``, ``12.3`` (n = 1) or ``12.3 ± 0.4``."""
        if self.all_exact:
            return "exact"
        text = f"{self.mean:.4g}" if not math.isfinite(self.half) else f"{self.mean:.4g} ± {self.half:.2g}"
        return text + (f" ({self.n_exact}/{self.n} exact)" if self.n_exact else "")


def group_stats(values: Any, metric: Metric | None = None) -> GroupStats:
    """Mean, t-interval half-width and exact count of ``values`` (one group's units)."""
    values = _series(values)
    n_exact = int(values.map(metric.is_exact).sum()) if metric is not None and metric.exact is not None else 0
    return GroupStats(float(values.mean()), half_width(values), len(values), n_exact)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Which methods are best in one group of a metric (one swept value, one facet), and by how much.

    ``ranking`` runs best first (exact matches before the rest); ``best`` holds the
    leader and every method a test found not significantly different from it (an
    untested one, e.g. a single measurement, is not counted as tied); ``versus`` is the
    leader's difference from the runner-up (leader minus runner-up).
    """

    metric: str
    x: Any
    facet: str | None
    ranking: tuple[str, ...]
    best: tuple[str, ...]
    stats: dict[str, GroupStats]
    versus: Difference | None

    @property
    def leader(self) -> str:
        return self.ranking[0]

    @property
    def runner_up(self) -> str | None:
        return self.ranking[1] if len(self.ranking) > 1 else None

    @property
    def significant(self) -> bool:
        return self.versus is not None and self.versus.significant

    def text(self, unit: str = "") -> str:
        """One sentence: the best, the runner-up, the difference and its test."""
        lead = self.stats[self.leader]
        if self.runner_up is None:
            return f"{self.leader} ({lead.text()}) is the only method"
        other = self.stats[self.runner_up]
        head = f"{self.leader} ({lead.text()})"
        if len(self.best) > 1:
            head = " and ".join([", ".join(self.best[:-1]), self.best[-1]]) + " tie for best, led by " + head
        else:
            head += " is best"
        return f"{head}; runner-up {self.runner_up} ({other.text()}): {self.versus.describe(unit)}"


def verdicts(
    rows: pd.DataFrame, metric: str, spec: Metric, x_param: str | None, facets: list[str],
    units: list[str] | None = None,
) -> list[Verdict]:
    """The verdicts of one metric: one per swept value and facet level; none when ``spec.better`` is None.

    ``rows`` holds the metric's rows of one suite; ``facets`` the columns whose levels
    get a verdict each; ``units`` the columns that identify a unit (default
    :func:`replicate_columns`).
    """
    if spec.better is None or rows.empty:
        return []
    units = replicate_columns(rows) if units is None else units
    by = [c for c in [x_param, *facets] if c and c in rows]
    out = []
    groups = rows.groupby(by, dropna=False, sort=False) if by else [((), rows)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(by, key))
        values = {name: unit_values(g, units) for name, g in group.groupby("interpolator", sort=False)}
        stats = {name: group_stats(v, spec) for name, v in values.items()}
        sign = 1.0 if spec.better == "higher" else -1.0
        order = sorted(values, key=lambda name: (not stats[name].all_exact, -sign * stats[name].mean))
        leader = order[0]
        diffs = {name: compare_groups(values[name], values[leader], spec) for name in order[1:]}
        best = (leader, *(n for n in order[1:] if not diffs[n].significant and diffs[n].test not in UNTESTED))
        facet = ", ".join(f"{c}={where[c]}" for c in facets if c in where) or None
        out.append(
            Verdict(metric, where.get(x_param), facet, tuple(order), best, stats,
                    diffs[order[1]] if len(order) > 1 else None)
        )
    return out
