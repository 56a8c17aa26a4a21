"""Numbers in user messages are plain text, never numpy reprs."""

import numpy as np
import pytest

from napari_fanet.io.formatting import format_number, format_numbers


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (np.float64(2.0), "2"),
        (np.float32(0.5), "0.5"),
        (np.int64(3), "3"),
        (2.123456, "2.123"),
        (1e-4, "0.0001"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        ("up", "'up'"),
        (None, "None"),
        (True, "True"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def test_format_numbers_never_shows_a_numpy_repr():
    values = (np.float64(2.0), np.float64(2.0), np.float32(2.5))
    assert format_numbers(values) == "(2, 2, 2.5)"
    assert format_numbers(np.array([1.0, 0.0, 1.0])) == "(1, 0, 1)"
    assert format_numbers([]) == "()"
    assert format_numbers("0 0 1") == "'0 0 1'"
    assert format_numbers(7) == "7"
