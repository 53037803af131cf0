"""The statistics of verdicts, tables and compare: known answers on synthetic results, and scipy as the reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bench.stats import (
    ALPHA,
    PAIRED,
    WELCH,
    compare_groups,
    group_stats,
    half_width,
    replicate_columns,
    unit_values,
    verdicts,
)
from suites.base import Metric

HIGHER = Metric("score", "dB", "higher")
LOWER = Metric("error", "px", "lower")


def synthetic(means: dict[str, float], noise: float, images: int = 6, seeds: int = 2, shared: float = 5.0,
              seed: int = 0) -> pd.DataFrame:
    """Rows of one metric at one swept value: each method's value per (image, seed) is its mean, plus an image
    effect ``shared`` by every method (what pairing removes), plus independent noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    image_effect = rng.normal(0, shared, images)
    rows = []
    for name, mean in means.items():
        for i in range(images):
            for s in range(seeds):
                rows.append({"interpolator": name, "level": 4, "image": f"im{i}", "seed": s, "metric": "m",
                             "value": mean + image_effect[i] + rng.normal(0, noise)})
    return pd.DataFrame(rows)


class TestCompareGroups:
    def test_paired_matches_scipy(self):
        rng = np.random.default_rng(1)
        index = [f"u{i}" for i in range(8)]
        a = pd.Series(rng.normal(size=8), index=index)
        b = a + 0.5 + rng.normal(scale=0.3, size=8)
        d = compare_groups(a, b.sample(frac=1, random_state=0))  # order does not matter: units pair by index
        reference = scipy.stats.ttest_rel(b, a)
        assert d.test == PAIRED and d.p == pytest.approx(reference.pvalue)
        assert d.diff == pytest.approx((b - a).mean())
        low, high = reference.confidence_interval(0.95)
        assert (d.low, d.high) == (pytest.approx(low), pytest.approx(high))

    def test_welch_when_units_differ(self):
        rng = np.random.default_rng(2)
        a = pd.Series(rng.normal(size=5), index=list("abcde"))
        b = pd.Series(rng.normal(1.0, 2.0, size=7), index=list("abcdefg"))
        d = compare_groups(a, b)
        reference = scipy.stats.ttest_ind(b, a, equal_var=False)
        assert d.test == WELCH and d.p == pytest.approx(reference.pvalue) and (d.n_a, d.n_b) == (5, 7)
        low, high = reference.confidence_interval(0.95)
        assert (d.low, d.high) == (pytest.approx(low), pytest.approx(high))

    def test_single_values_are_not_tested(self):
        d = compare_groups(pd.Series([1.0], index=["x"]), pd.Series([2.0], index=["y"]))
        assert d.diff == 1.0 and math.isnan(d.p) and not d.significant and d.test == "one measurement a side"

    def test_constant_differences_are_certain(self):
        index = list("abc")
        d = compare_groups(pd.Series([1.0, 5.0, 9.0], index=index), pd.Series([1.5, 5.5, 9.5], index=index))
        assert d.test == PAIRED and d.significant and d.diff == pytest.approx(0.5) and d.low == d.high

    def test_equal_within_rounding_is_a_tie(self):
        index = list("abc")
        a = pd.Series([0.1 + 0.2, 1.0, 2.0], index=index)
        d = compare_groups(a, pd.Series([0.3, 1.0, 2.0], index=index))
        assert d.test == "equal" and d.diff == 0.0 and not d.significant

    def test_exact_matches(self):
        psnr = Metric("PSNR", "dB", "higher", exact=120.0)
        exact, finite = pd.Series([120.0, 120.0]), pd.Series([30.0, 31.0])
        d = compare_groups(finite, exact, psnr)
        assert d.test == "exact match" and d.significant and d.diff == math.inf  # b is the exact one, b - a > 0
        assert compare_groups(exact, finite, psnr).diff == -math.inf
        both = compare_groups(exact, exact, psnr)
        assert both.test == "both exact" and not both.significant and both.diff == 0
        mixed = compare_groups(pd.Series([120.0, 30.0]), finite, psnr)
        assert "not tested" in mixed.test and not mixed.significant

    def test_deterministic_metric(self):
        flops = Metric("FLOPs", "FLOP", "lower", deterministic=True)
        d = compare_groups(pd.Series([100.0]), pd.Series([300.0]), flops)
        assert d.test == "deterministic" and d.significant and d.diff == 200.0


class TestIntervals:
    def test_half_width_is_the_t_interval(self):
        values = [1.0, 2.0, 4.0, 7.0]
        expected = scipy.stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
        assert half_width(values) == pytest.approx(expected)
        assert math.isnan(half_width([3.0]))

    def test_group_stats_text(self):
        assert group_stats([1.0, 2.0, 3.0]).text() == f"2 ± {half_width([1.0, 2.0, 3.0]):.2g}"
        psnr = Metric("PSNR", "dB", "higher", exact=120.0)
        assert group_stats([120.0, 120.0], psnr).text() == "exact"
        assert group_stats([120.0, 30.0], psnr).text().endswith("(1/2 exact)")

    def test_units(self):
        frame = pd.DataFrame(columns=["suite", "interpolator", "level", "image", "trial", "seed", "value"])
        assert replicate_columns(frame) == ["image", "trial", "seed"]


class TestVerdicts:
    """Known answers: a clear winner, an exact tie, a difference inside the noise, and which way is better."""

    @staticmethod
    def verdict(rows: pd.DataFrame, spec: Metric = HIGHER):
        (v,) = verdicts(rows, "m", spec, "level", [])
        return v

    def test_clear_winner(self):
        # 2 dB better on every image, noise 0.2 dB, a 5 dB image effect that pairing removes
        v = self.verdict(synthetic({"a": 30.0, "b": 32.0, "c": 25.0}, noise=0.2))
        assert v.ranking == ("b", "a", "c") and v.best == ("b",) and v.significant
        assert v.versus.test == PAIRED and v.versus.p < 1e-6 and v.versus.n == "12"
        assert v.versus.low < 2.0 < v.versus.high  # the true difference is inside the interval
        assert "b (" in v.text("dB") and "is best" in v.text("dB") and "significant" in v.text("dB")

    def test_pairing_sees_through_the_image_effect(self):
        """Welch's test over the same values could not separate them: the image effect dwarfs 0.5 dB."""
        rows = synthetic({"a": 30.0, "b": 30.5}, noise=0.1, shared=5.0)
        v = self.verdict(rows)
        assert v.significant and v.versus.test == PAIRED
        a, b = (rows[rows.interpolator == n]["value"] for n in ("a", "b"))
        assert scipy.stats.ttest_ind(b, a, equal_var=False).pvalue > ALPHA

    def test_tie(self):
        rows = synthetic({"a": 30.0, "b": 30.0}, noise=0.0)
        rows.loc[rows.interpolator == "b", "value"] = rows.loc[rows.interpolator == "a", "value"].to_numpy()
        v = self.verdict(rows)
        assert set(v.best) == {"a", "b"} and not v.significant and v.versus.test == "equal"
        assert "tie for best" in v.text()

    def test_difference_inside_the_noise(self):
        # 0.05 dB apart with 1 dB of noise over 12 units: not significant, and the interval covers 0
        v = self.verdict(synthetic({"a": 30.0, "b": 30.05}, noise=1.0, seed=3))
        assert set(v.best) == {"a", "b"} and not v.significant
        assert v.versus.low < 0 < v.versus.high and v.versus.p > ALPHA

    def test_lower_is_better(self):
        v = self.verdict(synthetic({"a": 1.0, "b": 3.0}, noise=0.1, shared=0.5), LOWER)
        assert v.leader == "a" and v.best == ("a",) and v.versus.diff == pytest.approx(-2.0, abs=0.2)

    def test_best_set_keeps_every_method_not_worse(self):
        # a and b within the noise of each other, c far behind: a tie for best of a and b
        v = self.verdict(synthetic({"a": 30.0, "b": 29.98, "c": 20.0}, noise=1.0, seed=5))
        assert set(v.best) == {"a", "b"} and v.ranking[-1] == "c"

    def test_exact_match_wins(self):
        rows = synthetic({"a": 30.0, "b": 28.0}, noise=0.5)
        rows.loc[rows.interpolator == "a", "value"] = 120.0
        v = self.verdict(rows, Metric("PSNR", "dB", "higher", exact=120.0))
        assert v.leader == "a" and v.stats["a"].all_exact and v.versus.test == "exact match" and v.significant

    def test_no_direction_no_verdict(self):
        assert verdicts(synthetic({"a": 1.0, "b": 2.0}, 0.1), "m", Metric("ratio"), "level", []) == []

    def test_one_verdict_per_swept_value_and_facet(self):
        rows = pd.concat([synthetic({"a": 1.0, "b": 2.0}, 0.1).assign(level=lv, batch=bt)
                          for lv in (1, 2) for bt in (1, 8)])
        found = verdicts(rows, "m", HIGHER, "level", ["batch"])
        assert sorted((v.x, v.facet) for v in found) == [
            (1, "batch=1"), (1, "batch=8"), (2, "batch=1"), (2, "batch=8")]
        assert all(v.leader == "b" for v in found)

    def test_unit_values_pair_by_image_and_seed(self):
        rows = synthetic({"a": 1.0}, 0.0, images=2, seeds=2)
        values = unit_values(rows, ["image", "seed"])
        assert list(values.index) == [("im0", "0"), ("im0", "1"), ("im1", "0"), ("im1", "1")]
