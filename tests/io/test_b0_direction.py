"""B0 directions between world and array axes."""

import re

import numpy as np
import pytest

from napari_fanet.io.b0_direction import B0Direction, b0_direction_problem, parse_b0_text


def test_world_to_array_direction_uses_only_rotation_and_flips():
    from napari_fanet.io.b0_direction import array_to_world_direction, world_to_array_direction

    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    world = np.array([1.0, 0.0, 1.0]) / np.sqrt(2)
    # anisotropic voxels must not tilt the direction (the physical angle is what matters)
    np.testing.assert_allclose(world_to_array_direction(world, affine), world, atol=1e-12)
    flipped = np.diag([-2.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(world_to_array_direction(world, flipped), [-world[0], 0, world[2]])
    back = array_to_world_direction(world_to_array_direction(world, flipped), flipped)
    np.testing.assert_allclose(back, world, atol=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0, 0, 1", (0.0, 0.0, 1.0)),
        ("0 0 1", (0.0, 0.0, 1.0)),
        (" 0, 0.5 1 ", (0.0, 0.5, 1.0)),
        ("1e-3,-2,3", (0.001, -2.0, 3.0)),
    ],
)
def test_parse_b0_text_reads_commas_and_spaces(text, expected):
    parsed = parse_b0_text(text)
    assert isinstance(parsed, B0Direction) and parsed == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("up", r"^B0 direction must be 3 numbers such as '0, 0, 1'; got 'up'$"),
        ("0, z, 1", r"^B0 direction must be 3 numbers such as '0, 0, 1'; got '0, z, 1'$"),
        ("", r"^B0 direction must be 3 numbers; got 0: \(\)$"),
        ("0 1", r"^B0 direction must be 3 numbers; got 2: \(0, 1\)$"),
        ("1 2 3 4", r"^B0 direction must be 3 numbers; got 4: \(1, 2, 3, 4\)$"),
        ("nan, 0, 1", r"^B0 direction must be 3 finite numbers; got \(nan, 0, 1\)$"),
        ("0, inf, 1", r"^B0 direction must be 3 finite numbers; got \(0, inf, 1\)$"),
        ("0,0,0", r"^B0 direction must be 3 numbers, not all zero; got \(0, 0, 0\)$"),
    ],
)
def test_parse_b0_text_says_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_b0_text(text)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ("0 0 1", r"^B0 direction must be 3 numbers; got '0 0 1'$"),
        (None, r"^B0 direction must be 3 numbers; got None$"),
        ((0, 1), r"^B0 direction must be 3 numbers; got 2: \(0, 1\)$"),
        ((np.nan, 0, 1), r"^B0 direction must be 3 finite numbers; got \(nan, 0, 1\)$"),
        ((np.float64(0),) * 3, r"^B0 direction must be 3 numbers, not all zero; got \(0, 0, 0\)$"),
        ([object(), 1, 2], r"^B0 direction must be 3 numbers; got \[<object"),
    ],
)
def test_b0_direction_is_validated_once(values, match):
    with pytest.raises(ValueError, match=match):
        B0Direction(values)
    if not isinstance(values, str):  # text is parse_b0_text's, where "0 0 1" is fine
        assert re.search(match, b0_direction_problem(values))


def test_b0_direction_is_a_tuple_of_floats():
    b0 = B0Direction([0, np.float32(3), 4])
    assert b0 == (0.0, 3.0, 4.0) and all(type(v) is float for v in b0)
    assert b0.unit() == (0.0, 0.6, 0.8) and b0_direction_problem(b0) is None
    np.testing.assert_array_equal(np.asarray(b0), [0.0, 3.0, 4.0])
    assert repr(b0) == "B0Direction((0.0, 3.0, 4.0))"
