"""Per-lesion table: sizes, world centroids, probabilities, susceptibility rims, locations.

Locations are checked on tiny grids placed anywhere in MNI space through their affine (a
5-voxel cube at a chosen MNI point), against places any neuroanatomist would name the same:
the pons, the cerebellum, a lateral ventricle wall, the lateral cortex, the centrum semiovale.
The real-patient checks skip when ``shared/data`` is absent.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from napari_fanet.evaluation.lesion_table import (
    LOCATION_CLASSES,
    classify_locations,
    lesion_table,
    template_alignment,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "open-ms-lesjak2017"


def two_lesions():
    """A 3-voxel diagonal chain (26-connected), a 2x2x2 cube, and a 2-voxel speck."""
    mask = np.zeros((10, 12, 8), dtype=np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[3, 3, 3] = 1  # corner-touching: one lesion
    mask[6:8, 7:9, 4:6] = 1
    mask[9, 0, 0] = mask[9, 0, 1] = 1  # 2 voxels < min_size 3: ignored
    return mask


def test_lesions_are_26_connected_with_a_minimum_size_and_world_centroids() -> None:
    affine = np.array(
        [[-1.0, 0, 0, 30.0], [0, 2.0, 0, -10.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]]
    )  # flipped x, anisotropic 1 x 2 x 3 mm
    table = lesion_table(two_lesions(), affine)
    assert len(table) == 2 and [r["id"] for r in table.rows] == [1, 2]
    first, second = table.rows
    assert first["n_voxels"] == 3 and second["n_voxels"] == 8
    np.testing.assert_allclose(first["volume_ml"], 3 * 6 / 1000)
    np.testing.assert_allclose(table.total_volume_ml, 11 * 6 / 1000)
    # centroid voxel (6.5, 7.5, 4.5) -> world by hand: x = 30 - 6.5, y = -10 + 15, z = 5 + 13.5
    centre = [second[f"centroid_{a}_mm"] for a in "xyz"]
    np.testing.assert_allclose(centre, [23.5, 5.0, 18.5])
    assert table.labels.dtype == np.int32 and set(np.unique(table.labels)) == {0, 1, 2}
    assert table.labels[9, 0, 0] == 0
    assert all(r["location"] in LOCATION_CLASSES for r in table.rows)


def test_min_size_is_configurable_and_a_labels_layer_with_several_values_is_one_mask() -> None:
    mask = two_lesions() * 3  # labels layers may paint any value
    assert len(lesion_table(mask, np.eye(4), min_size=1)) == 3
    assert len(lesion_table(mask, np.eye(4), min_size=4)) == 1


def test_probability_columns() -> None:
    mask = two_lesions()
    prob = np.zeros(mask.shape, dtype=np.float32)
    prob[1, 1, 1], prob[2, 2, 2], prob[3, 3, 3] = 0.6, 0.9, 0.75
    prob[6:8, 7:9, 4:6] = 0.55
    table = lesion_table(mask, np.eye(4), probability=prob)
    assert table.columns[-2:] == ("max_probability", "mean_probability")
    np.testing.assert_allclose(
        [table.rows[0]["max_probability"], table.rows[0]["mean_probability"]], [0.9, 0.75]
    )
    np.testing.assert_allclose(table.rows[1]["mean_probability"], 0.55, rtol=1e-6)


def test_susceptibility_mean_and_rim_minus_core() -> None:
    shape = (20, 20, 20)
    mask = np.zeros(shape, dtype=bool)
    mask[8:12, 8:12, 8:12] = True  # lesion A: 4^3 voxels
    mask[8:10, 8:10, 14:16] = True  # lesion B, 2 voxels beyond A's 2-voxel shell gap
    chi = np.full(shape, 0.01)
    chi[mask] = 0.05
    # A's 2-voxel shell (26-connected dilation) = the 8^3 box minus A
    shell = np.zeros(shape, dtype=bool)
    shell[6:14, 6:14, 6:14] = True
    shell &= ~mask
    chi[shell] = -0.02
    table = lesion_table(mask, np.eye(4), chi=chi, rim_voxels=2)
    a = table.rows[0]
    np.testing.assert_allclose(a["mean_chi_ppm"], 0.05)
    np.testing.assert_allclose(a["rim_minus_core_chi_ppm"], -0.02 - 0.05)
    # rim of 1 voxel: the 6^3 box minus A, all -0.02 too
    np.testing.assert_allclose(
        lesion_table(mask, np.eye(4), chi=chi, rim_voxels=1).rows[0]["rim_minus_core_chi_ppm"],
        -0.07,
    )
    # B's rim excludes A's voxels: it mixes shell (-0.02) and background (0.01) only
    b = table.rows[1]
    assert -0.02 - 0.05 < b["rim_minus_core_chi_ppm"] < 0.01 - 0.05


def test_csv_round_trip() -> None:
    prob = np.full((10, 12, 8), 0.7, dtype=np.float32)
    table = lesion_table(two_lesions(), np.eye(4), probability=prob, chi=np.zeros((10, 12, 8)))
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert tuple(rows[0]) == table.columns
    assert [int(r["n_voxels"]) for r in rows] == [3, 8]
    assert float(rows[1]["volume_ml"]) == pytest.approx(0.008)
    assert rows[0]["rim_minus_core_chi_ppm"] == "0"


def test_an_empty_mask_gives_an_empty_table_with_a_header() -> None:
    table = lesion_table(np.zeros((4, 4, 4), dtype=bool), np.eye(4))
    assert len(table) == 0 and table.total_volume_ml == 0.0
    assert table.to_csv().splitlines() == [",".join(table.columns)]


def cube_at(mni_point, size=5, voxel=2.0):
    """A ``size``-voxel cube filling a tiny grid whose centre voxel lies at ``mni_point``."""
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = np.asarray(mni_point, dtype=float) - voxel * (size - 1) / 2
    grid = np.zeros((size + 2,) * 3, dtype=np.int32)
    grid[1:-1, 1:-1, 1:-1] = 1
    affine[:3, 3] -= voxel  # the one-voxel empty border
    return grid, affine


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((0.0, -28.0, -35.0), "infratentorial"),  # pons
        ((28.0, -65.0, -35.0), "infratentorial"),  # right cerebellar hemisphere
        ((-8.0, -25.0, -12.0), "infratentorial"),  # left cerebral peduncle (midbrain)
        ((60.0, -20.0, 10.0), "juxtacortical"),  # lateral temporal cortex
        ((0.0, 50.0, 30.0), "juxtacortical"),  # medial frontal cortex
        ((27.0, -15.0, 30.0), "deep white matter"),  # right centrum semiovale
    ],
)
def test_location_of_a_lesion_at_a_known_mni_place(point, expected) -> None:
    labels, affine = cube_at(point, size=3)
    assert classify_locations(labels, affine) == [expected]


def test_a_lesion_on_the_ventricle_wall_is_periventricular() -> None:
    from napari_fanet.simulation.template import load_template

    t = load_template()
    vox = np.argwhere(t.ventricles > 0.5)
    world = vox @ t.affine[:3, :3].T + t.affine[:3, 3]
    right = world[world[:, 0] > 0]
    # the most lateral ventricle voxel of the right body, pushed 3 mm further out
    edge = right[np.argmax(right[:, 0])] + [3.0, 0.0, 0.0]
    labels, affine = cube_at(edge, size=1)
    assert classify_locations(labels, affine) == ["periventricular"]
    assert classify_locations(labels, affine, periventricular_mm=0.5) != ["periventricular"]


def test_template_alignment_is_identity_without_a_mask_and_recovers_a_moved_template() -> None:
    from napari_fanet.simulation.template import load_template

    t = load_template()
    np.testing.assert_array_equal(template_alignment(None, np.eye(4)), np.eye(4))
    np.testing.assert_allclose(template_alignment(t.mask, t.affine), np.eye(4), atol=1e-6)
    # the same brain 10% bigger and shifted: the alignment undoes both
    moved = np.diag([1.1, 1.1, 1.1, 1.0]) @ t.affine
    moved[:3, 3] += (5.0, -7.0, 3.0)
    to_mni = template_alignment(t.mask, moved)
    np.testing.assert_allclose(to_mni @ moved, t.affine, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rim_voxels": 0}, ValueError, "rim_voxels must be an integer >= 1, got 0"),
        ({"rim_voxels": 1.5}, ValueError, "rim_voxels must be an integer >= 1, got 1.5"),
        ({"probability": np.zeros((2, 2, 2))}, ValueError, r"shapes must match, got mask"),
        ({"periventricular_mm": -1.0}, ValueError, "periventricular_mm must be a finite"),
        ({"juxtacortical_mm": float("nan")}, ValueError, "juxtacortical_mm must be a finite"),
        ({"min_size": 0}, ValueError, "min_size must be >= 1 voxel"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        lesion_table(two_lesions(), np.eye(4), **kwargs)


def test_bad_affine_and_empty_brain_mask_are_refused() -> None:
    with pytest.raises(ValueError, match="affine must be a finite invertible 4x4 matrix"):
        lesion_table(two_lesions(), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="brain_mask must be a non-empty 3D array"):
        template_alignment(np.zeros((3, 3, 3)), np.eye(4))


# -- real patients (Lesjak et al. 2018, MNI-registered 1 mm) ------------------------------------


def patient_table(patient):
    if not DATA.is_dir():
        pytest.skip(f"real MS patients not available (no {DATA}; see shared/data/README.md)")
    from napari_fanet.io.nifti import load_volume

    lesions = load_volume(DATA / patient / "consensus_lesions.nii.gz", name="lesions")
    return lesion_table(lesions.data, lesions.affine)


def test_patient19_confluent_lesions_are_mostly_periventricular() -> None:
    table = patient_table("patient19")
    volume = Counter()
    for row in table.rows:
        volume[row["location"]] += row["volume_ml"]
    assert volume["periventricular"] / table.total_volume_ml > 0.8
    assert volume["infratentorial"] == 0


@pytest.mark.parametrize("patient", ["patient07", "patient26"])
def test_real_patients_get_every_lesion_a_class(patient) -> None:
    table = patient_table(patient)
    assert len(table) > 10
    assert {r["location"] for r in table.rows} <= set(LOCATION_CLASSES)
    assert Counter(r["location"] for r in table.rows)["periventricular"] >= 3
