"""How the dashboard writes rates and sizes: a table of values and the
strings a reader sees."""

from __future__ import annotations

import pytest

from samplez.dashboard.formatting import megabytes, rate


@pytest.mark.parametrize(
    "per_second, expected",
    [
        pytest.param(1234.5, "1,234 /s", id="thousands"),
        pytest.param(150.3, "150 /s", id="hundreds-whole"),
        pytest.param(99.6, "100 /s", id="rounds-up-to-100"),
        pytest.param(45.67, "46 /s", id="two-digits"),
        pytest.param(1.234, "1.2 /s", id="just-above-one"),
        pytest.param(1, "1 /s", id="one-per-second"),
        pytest.param(0.5, "30 /min", id="half-per-second"),
        pytest.param(1 / 60, "1 /min", id="one-per-minute"),
        pytest.param(0.00184, "6.6 /h", id="spec-example"),
        pytest.param(1 / 3600, "1 /h", id="one-per-hour"),
        pytest.param(0.0001, "8.6 /d", id="per-day"),
        pytest.param(1e-9, "< 0.01 /d", id="below-the-smallest-unit"),
        pytest.param(0, "0 /s", id="zero"),
        pytest.param(0.0, "0 /s", id="zero-float"),
        pytest.param(None, "–", id="none"),
        pytest.param(float("nan"), "–", id="nan"),
        pytest.param(float("inf"), "–", id="inf"),
        pytest.param(-2.0, "–", id="negative"),
        pytest.param(True, "–", id="bool"),
        pytest.param("3", "–", id="str"),
    ],
)
def test_a_rate_reads_in_a_human_unit(per_second, expected):
    assert rate(per_second) == expected


@pytest.mark.parametrize(
    "size, expected",
    [
        pytest.param(43_000_000, "41 MB", id="tens"),
        pytest.param(512 * 2**20, "512 MB", id="hundreds"),
        pytest.param(3 * 2**30, "3,072 MB", id="gigabytes-in-MB"),
        pytest.param(None, "–", id="none"),
        pytest.param(float("inf"), "–", id="inf"),
    ],
)
def test_a_size_reads_in_megabytes(size, expected):
    assert megabytes(size) == expected
