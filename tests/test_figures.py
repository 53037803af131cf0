"""Drawing report sections (bench.figures): each panel kind, palette colours, pictures at their own resolution."""

from __future__ import annotations

import base64
import io

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from bench.figures import draw, figure_html, picture_png, section_html
from suites.sections import Arrows, Figure, Image, Lines, Note, Points, Section, Series, Table, to_uint8

PALETTE = {"bilinear": (1.0, 0.0, 0.0), "lstn": (0.0, 0.0, 1.0)}


def decode(b64: str) -> PILImage.Image:
    return PILImage.open(io.BytesIO(base64.b64decode(b64)))


class TestPictures:
    def test_uint8_pictures_are_kept_as_they_are(self):
        grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
        picture = decode(picture_png(Image(grey)))
        assert picture.mode == "L" and np.array_equal(np.asarray(picture), grey)
        rgb = to_uint8(np.random.default_rng(0).random((3, 5, 4)))
        assert np.array_equal(np.asarray(decode(picture_png(Image(rgb))).convert("RGB")), rgb)

    def test_maps_go_through_the_colour_map_and_nan_is_grey(self):
        values = np.array([[0.0, 0.5], [1.0, np.nan]])
        picture = np.asarray(decode(picture_png(Image(values, cmap="gray", vmin=0, vmax=1))).convert("RGB"))
        assert picture.shape == (2, 2, 3)
        assert tuple(picture[0, 0]) == (0, 0, 0) and tuple(picture[1, 0]) == (255, 255, 255)
        assert abs(int(picture[0, 1, 0]) - 128) <= 1 and tuple(picture[1, 1]) == (217, 217, 217)

    def test_grid_of_pictures_is_html(self):
        figure = Figure(((Image(np.zeros((2, 2), np.uint8)), None),), row_labels=("row",), col_labels=("a", "b"),
                        caption="a <caption>")
        html = figure_html(figure, PALETTE)
        assert html.count('class="px"') == 1 and "<th>a</th>" in html and "a &lt;caption&gt;" in html


class TestDraw:
    def test_lines_with_bands_and_palette_colours(self):
        series = (Series("bilinear", [1, 2, 3], [1.0, 2.0, 3.0], [0.5, 1.5, 2.5], [1.5, 2.5, 3.5], key="bilinear"),
                  Series("other", [1, 2, 3], [3.0, 2.0, 1.0]))
        fig = draw(Figure(((Lines(series, hline=2.0, ylog=True),),), legend=True), PALETTE)
        ax = fig.axes[0]
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert list(lines["bilinear"].get_ydata()) == [1.0, 2.0, 3.0]
        assert matplotlib.colors.to_rgb(lines["bilinear"].get_color()) == PALETTE["bilinear"]
        assert len(ax.collections) == 1 and ax.get_yscale() == "log"  # one band; the reference line is a line
        assert len(fig.legends) == 1
        plt.close(fig)

    def test_points(self):
        fig = draw(Figure(((Points((("bilinear", 1.0, 0.5), ("lstn", 10.0, 0.9)), xlog=True),),)), PALETTE)
        ax = fig.axes[0]
        offsets = np.vstack([c.get_offsets() for c in ax.collections])
        assert offsets.tolist() == [[1.0, 0.5], [10.0, 0.9]] and ax.get_xscale() == "log"
        plt.close(fig)

    def test_arrows_are_coloured_by_direction(self):
        points = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
        vectors = np.array([[-1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
        good = (vectors * -points).sum(axis=1) > 0
        fig = draw(Figure(((Arrows(points, vectors, good),),)), PALETTE)
        ax = fig.axes[0]
        quiver = next(c for c in ax.collections if hasattr(c, "U"))
        assert len(quiver.U) == 2  # the zero vector is a dot, not an arrow
        colours = [matplotlib.colors.to_hex(c) for c in quiver.get_facecolors()]
        assert colours == ["#1a9641", "#d7191c"]  # toward the origin green, away red
        assert ax.yaxis_inverted()  # y down, as in images
        plt.close(fig)

    def test_unknown_panel(self):
        with pytest.raises(TypeError, match="expected Image, Arrows, Lines or Points"):
            draw(Figure((("not a panel",),)), PALETTE)


def test_section_items_are_escaped():
    section = Section("A <title>", (Note("one <b>\n\ntwo"), Table(pd.DataFrame({"x": ["<i>"]}), caption="c")))
    html = section_html(section, PALETTE)
    assert "<h3>A &lt;title&gt;</h3>" in html and "<p>one &lt;b&gt;</p><p>two</p>" in html
    assert "&lt;i&gt;" in html and "<i>" not in html
    with pytest.raises(TypeError, match="expected Note, Table or Figure"):
        section_html(Section("s", ("<p>html</p>",)), PALETTE)
