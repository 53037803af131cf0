"""The registry: register, available, create, describe, and entry-point plugins."""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Literal

import pytest
import torch

import interpolators
from interpolators import Interpolator, _registry
from interpolators.base import PaddingMode, check_number


class Doubler(Interpolator):
    """Bilinear times ``factor``: a toy method for registry tests."""

    summary = "toy"
    reference = "tests"

    def __init__(
        self,
        factor: float = 2.0,
        flavour: Literal["plain", "fancy"] = "plain",
        limit: int | None = None,
        padding_mode: PaddingMode = "zeros",
        align_corners: bool = False,
    ) -> None:
        super().__init__(padding_mode, align_corners)
        check_number("factor", factor, minimum=0.0, strict=True)
        self.factor, self.flavour, self.limit = factor, flavour, limit

    def sample(self, input, grid, generator):
        out = torch.nn.functional.grid_sample(input, grid, align_corners=self.align_corners)
        return out * self.factor


@pytest.fixture
def doubler():
    interpolators.register("toy_doubler", tags=("toy",))(Doubler)
    yield "toy_doubler"
    interpolators.unregister("toy_doubler")


class TestRegister:
    def test_bare_decorator_uses_lowercase_class_name(self):
        cls = type("ZetaSampler", (Doubler,), {})
        try:
            assert interpolators.register(cls) is cls
            assert "zetasampler" in interpolators.available()
        finally:
            interpolators.unregister("zetasampler")

    def test_duplicate_name_raises(self, doubler):
        with pytest.raises(ValueError, match="already taken"):
            interpolators.register("toy_doubler")(Doubler)
        with pytest.raises(ValueError, match="bilinear"):
            interpolators.register("bilinear")(Doubler)

    def test_rejects_non_interpolators_and_bad_names(self):
        with pytest.raises(TypeError, match="Interpolator subclass"):
            interpolators.register("thing")(object)
        with pytest.raises(ValueError, match="must match"):
            interpolators.register("Bad-Name")(Doubler)

    def test_hyperparameters_need_defaults(self):
        class NoDefault(Interpolator):
            def __init__(self, k: int, padding_mode: PaddingMode = "zeros", align_corners: bool = False):
                super().__init__(padding_mode, align_corners)

        with pytest.raises(TypeError, match="'k' needs a default"):
            interpolators.register("no_default")(NoDefault)
        assert "no_default" not in interpolators.available()


class TestAvailable:
    def test_builtins(self):
        assert set(interpolators.available()) >= {"nearest", "bilinear", "bicubic", "lstn", "estn", "pyramid", "prefiltered"}

    def test_wildcard_and_tag(self, doubler):
        assert interpolators.available("bi*") == ["bicubic", "bilinear"]
        assert interpolators.available(tag="toy") == ["toy_doubler"]
        assert interpolators.available("nothing*") == []

    def test_natural_sort(self):
        names = ["s10", "s2", "s1"]
        classes = [type(f"S{n}", (Doubler,), {}) for n in names]
        try:
            for n, c in zip(names, classes):
                interpolators.register(n)(c)
            assert interpolators.available("s*") == ["s1", "s2", "s10"]
        finally:
            for n in names:
                interpolators.unregister(n)


class TestCreate:
    def test_merges_kwargs_over_defaults(self, doubler):
        m = interpolators.create(doubler, factor=3.0)
        assert m.hparams() == {
            "factor": 3.0, "flavour": "plain", "limit": None, "padding_mode": "zeros", "align_corners": False
        }
        x = torch.rand(1, 1, 4, 4)
        grid = torch.zeros(1, 2, 2, 2)
        ref = torch.nn.functional.grid_sample(x, grid, align_corners=False)
        torch.testing.assert_close(m(x, grid), 3 * ref)

    def test_unknown_name_lists_valid(self):
        with pytest.raises(ValueError, match=r"unknown name 'bilnear'.*'bilinear'"):
            interpolators.create("bilnear")

    def test_unknown_hparam_lists_valid(self, doubler):
        with pytest.raises(TypeError, match=r"unknown hyperparameter\(s\) \['factr'\].*'factor'"):
            interpolators.create(doubler, factr=1.0)

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            ({"factor": "big"}, TypeError, r"toy_doubler.factor: expected float"),
            ({"factor": -1.0}, ValueError, r"factor: expected a value > 0.0"),
            ({"flavour": "odd"}, ValueError, r"flavour: expected one of 'plain', 'fancy'"),
            ({"limit": 1.5}, TypeError, r"limit: expected int or None"),
            ({"padding_mode": "wrap"}, ValueError, r"padding_mode: expected one of"),
            ({"align_corners": 1}, TypeError, r"align_corners: expected bool"),
        ],
    )
    def test_invalid_values(self, doubler, kwargs, error, match):
        with pytest.raises(error, match=match):
            interpolators.create(doubler, **kwargs)

    def test_int_accepted_for_float(self, doubler):
        assert interpolators.create(doubler, factor=2).factor == 2


class TestDescribe:
    def test_fields(self, doubler):
        d = interpolators.describe(doubler)
        assert d["stochastic"] is False and d["reference"] == "tests" and d["tags"] == ["toy"]
        assert d["hparams"]["factor"] == {"default": 2.0, "type": "float", "choices": None}
        assert d["hparams"]["flavour"]["choices"] == ["plain", "fancy"]
        assert d["hparams"]["limit"]["type"] == "int or None"

    def test_every_builtin_describes(self):
        for name in interpolators.available():
            d = interpolators.describe(name)
            assert d["summary"], name
            assert {"padding_mode", "align_corners"} <= set(d["hparams"]), name

    def test_stochastic_flags(self):
        assert interpolators.describe("lstn")["stochastic"] is True
        assert interpolators.describe("bilinear")["stochastic"] is False


class TestHyperparameters:
    def test_callers_cannot_alter_the_cached_spec(self):
        spec = _registry.hyperparameters(Doubler)
        spec.pop("factor")
        assert "factor" in _registry.hyperparameters(Doubler)
        assert interpolators.create("bilinear").hparams() == {"padding_mode": "zeros", "align_corners": False}


class TestParse:
    @pytest.mark.parametrize(
        "name, text, value",
        [("factor", "1.5", 1.5), ("limit", "none", None), ("limit", "7", 7), ("flavour", "fancy", "fancy"),
         ("align_corners", "true", True), ("align_corners", "0", False)],
    )
    def test_parse(self, name, text, value):
        assert _registry.hyperparameters(Doubler)[name].parse(text, "toy") == value

    def test_parse_error_names_argument(self):
        with pytest.raises(ValueError, match=r"toy.limit: expected int or None, got 'x'"):
            _registry.hyperparameters(Doubler)["limit"].parse("x", "toy")


# --- plugins through the entry-point group -------------------------------------------------


def _fake_entry_points(monkeypatch, eps):
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):
        if kwargs.get("group") == interpolators.ENTRY_POINT_GROUP:
            return eps
        return real(**kwargs)

    monkeypatch.setattr(_registry.importlib.metadata, "entry_points", entry_points)


PLUGIN_SOURCE = """
import torch
import interpolators

class GoodSampler(interpolators.Interpolator):
    summary = "plugin"

    def __init__(self, padding_mode="zeros", align_corners: bool = False):
        super().__init__(padding_mode, align_corners)

    def sample(self, input, grid, generator):
        return torch.nn.functional.grid_sample(input, grid, align_corners=self.align_corners)
"""


@pytest.fixture
def plugin_env(monkeypatch, tmp_path):
    (tmp_path / "fake_good_plugin.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "fake_registering_plugin.py").write_text(
        PLUGIN_SOURCE.replace("class GoodSampler", "@interpolators.register('registered_by_module')\nclass Mod")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    group = interpolators.ENTRY_POINT_GROUP
    eps = [
        importlib.metadata.EntryPoint("good_plugin", "fake_good_plugin:GoodSampler", group),
        importlib.metadata.EntryPoint("broken_plugin", "no_such_module_xyz:Thing", group),
        importlib.metadata.EntryPoint("registering", "fake_registering_plugin", group),
    ]
    _fake_entry_points(monkeypatch, eps)
    monkeypatch.setattr(_registry, "_PLUGIN_ERRORS", {})
    yield
    for name in ("good_plugin", "registered_by_module"):
        interpolators.unregister(name)
    for module in ("fake_good_plugin", "fake_registering_plugin"):
        sys.modules.pop(module, None)


class TestPlugins:
    def test_plugins_load_and_broken_one_is_reported(self, plugin_env):
        with pytest.warns(RuntimeWarning, match="broken_plugin"):
            errors = _registry.load_plugins(force=True)
        assert set(errors) == {"broken_plugin"} and "no_such_module_xyz" in errors["broken_plugin"]
        assert {"good_plugin", "registered_by_module", "bilinear"} <= set(interpolators.available())
        out = interpolators.create("good_plugin")(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2))
        assert out.shape == (1, 1, 2, 2)
        with pytest.raises(ValueError, match="its plugin failed to load"):
            interpolators.create("broken_plugin")

    def test_installed_entry_points_load_cleanly(self):
        assert interpolators.plugin_errors() == {}
