"""The console's SVG charts: count axes in whole steps, and the pass line drawn where it belongs."""

from __future__ import annotations

import re

import pytest

from contactcenter.web.charts import bar_chart, count_axis, line_chart


@pytest.mark.parametrize(
    ("largest", "axis"), [(0, (1, 1)), (3, (3, 3)), (7, (8, 4)), (83.25, (100, 5)), (111, (150, 3))]
)
def test_count_axes_step_in_whole_numbers_of_1_2_or_5(largest: float, axis: tuple[int, int]) -> None:
    assert count_axis(largest) == axis


def test_the_rings_chart_labels_its_grid_in_whole_numbers() -> None:
    svg = bar_chart("接听前振铃次数", ["1", "2", "3", "4+"], [111, 40, 20, 3])  # was 27.75 / 55.5 / 83.25
    grid = [float(v) for v in re.findall(r'text-anchor="end">([0-9.]+)</text>', svg)]
    assert grid == [0, 50, 100, 150]


def test_the_trend_draws_the_pass_line_at_its_score() -> None:
    svg = line_chart("每日平均质检得分", ["2026-11-01", "2026-11-02"], [70.0, 90.0], reference=(80.0, "合格线 80"))
    line = re.search(r'<line class="reference" x1="\d+" y1="([0-9.]+)"', svg)
    assert line is not None and "合格线 80" in svg
    top, height = 12, 220 - 12 - 36
    assert float(line.group(1)) == pytest.approx(top + height * 0.2, abs=0.1)
