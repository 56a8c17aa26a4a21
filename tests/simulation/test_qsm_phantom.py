from __future__ import annotations

import math

import numpy as np
import pytest

from napari_fanet.io.b0_direction import world_to_array_direction
from napari_fanet.simulation._random import spawn_streams
from napari_fanet.simulation.deform import DeformationParams, random_anatomy
from napari_fanet.simulation.qsm_phantom import (
    STREAMS,
    QSMParams,
    simulate_qsm_subject,
)
from napari_fanet.simulation.qsm_structures import NUCLEI, random_b0_direction
from napari_fanet.simulation.template import mni_grid

RIGID = DeformationParams(
    max_rotation_deg=0.0,
    scale_range=(1.0, 1.0),
    axis_scale_jitter=0.0,
    max_translation_mm=0.0,
    displacement_std_mm=0.0,
)


def numpy_forward(chi: np.ndarray, voxel_size, b0) -> np.ndarray:
    """Independent float64 dipole convolution with zero padding to >= 1.5x (even sizes)."""
    shape = []
    for n in chi.shape:
        m = math.ceil(1.5 * n)
        shape.append(m + (m % 2) if m > n else m)
    k = np.meshgrid(
        *[np.fft.fftfreq(n, d=v) for n, v in zip(shape, voxel_size, strict=True)], indexing="ij"
    )
    b = np.asarray(b0, dtype=float) / np.linalg.norm(b0)
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    kb = k[0] * b[0] + k[1] * b[1] + k[2] * b[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(k2 > 0, 1.0 / 3.0 - kb**2 / k2, 0.0)
    padded = np.zeros(shape)
    padded[tuple(slice(0, n) for n in chi.shape)] = chi
    field = np.real(np.fft.ifftn(d * np.fft.fftn(padded)))
    return field[tuple(slice(0, n) for n in chi.shape)]


def test_same_seed_gives_identical_arrays(qsm4) -> None:
    again = simulate_qsm_subject(123, 4.0)
    for name in ("chi", "local_field", "magnitude", "mask", "affine"):
        np.testing.assert_array_equal(getattr(again, name), getattr(qsm4, name))
    assert again.meta == qsm4.meta
    assert again.b0_dir == qsm4.b0_dir


def test_different_seeds_differ(qsm4) -> None:
    other = simulate_qsm_subject(124, 4.0)
    assert not np.array_equal(other.chi, qsm4.chi)
    assert not np.array_equal(other.mask, qsm4.mask)
    assert other.b0_dir != qsm4.b0_dir
    assert other.meta["tissue_chi_ppm"] != qsm4.meta["tissue_chi_ppm"]


def test_shapes_dtypes_and_grid(qsm4) -> None:
    shape, affine = mni_grid(4.0)
    assert qsm4.mask.dtype == bool
    for arr in (qsm4.chi, qsm4.local_field, qsm4.magnitude):
        assert arr.shape == shape
        assert arr.dtype == np.float32
        assert np.all(arr[~qsm4.mask] == 0)
    np.testing.assert_array_equal(qsm4.affine, affine)
    assert qsm4.voxel_size == (4.0, 4.0, 4.0)
    assert qsm4.meta["shape"] == list(shape)


def test_chi_in_documented_range(qsm4) -> None:
    chi = qsm4.chi[qsm4.mask]
    assert chi.min() > -0.1
    assert chi.max() < 0.5
    assert np.count_nonzero(chi > 0.15) > 0  # veins or pallidum


def test_tissue_values_in_tissue_regions(qsm4) -> None:
    # rebuild the subject's anatomy from its own seed stream (same call as the phantom)
    anatomy = random_anatomy(spawn_streams(123, STREAMS)["anatomy"], 4.0)
    t = anatomy.tissues
    np.testing.assert_array_equal(t.mask, qsm4.mask)
    values = qsm4.meta["tissue_chi_ppm"]
    z = anatomy.template_world[2]
    wm = (t.wm > 0.95) & (qsm4.chi < 0.05)
    cortex = (t.gm > 0.9) & (z > 25)  # above the deep grey nuclei
    csf = t.csf > 0.95
    assert abs(np.median(qsm4.chi[wm]) - values["wm"]) < 0.006
    assert abs(np.median(qsm4.chi[cortex]) - values["gm"]) < 0.006
    assert abs(np.median(qsm4.chi[csf]) - values["csf"]) < 0.004
    assert -0.04 <= values["wm"] <= -0.02
    assert 0.01 <= values["gm"] <= 0.02


def test_deep_grey_nuclei_are_more_positive_than_white_matter() -> None:
    subject = simulate_qsm_subject(5, 3.0, params=QSMParams(deformation=RIGID, n_veins=(0, 0)))
    inv = np.linalg.inv(subject.affine)
    wm_value = subject.meta["tissue_chi_ppm"]["wm"]
    for nucleus in NUCLEI:
        expected = subject.meta["nucleus_chi_ppm"][nucleus.name]
        for side in (1.0, -1.0):
            centre = np.array(nucleus.centre) * [side, 1.0, 1.0]
            ijk = tuple(np.round(inv[:3, :3] @ centre + inv[:3, 3]).astype(int))
            got = subject.chi[ijk]
            assert got > wm_value + 0.02, nucleus.name
            assert abs(got - expected) < 0.04, nucleus.name
    gp = subject.meta["nucleus_chi_ppm"]["globus_pallidus"]
    assert gp > subject.meta["nucleus_chi_ppm"]["thalamus"]
    assert 0.1 <= gp <= 0.2


@pytest.mark.parametrize("voxel_size", [4.0, (3.0, 3.0, 5.0)])
def test_noise_free_field_is_the_forward_model_of_chi(voxel_size) -> None:
    subject = simulate_qsm_subject(9, voxel_size, noise=False)
    expected = numpy_forward(subject.chi.astype(np.float64), subject.voxel_size, subject.b0_dir)
    expected *= subject.mask
    scale = np.abs(expected).max()
    np.testing.assert_allclose(subject.local_field, expected, atol=1e-5 * scale)
    assert subject.meta["field_noise_std_ppm"] == 0.0


def test_noisy_field_is_forward_plus_gaussian_noise(qsm4) -> None:
    clean = simulate_qsm_subject(123, 4.0, noise=False)
    np.testing.assert_array_equal(clean.chi, qsm4.chi)  # noise draws do not move the rest
    noise = qsm4.local_field - clean.local_field
    assert np.all(noise[~qsm4.mask] == 0)
    sigma = qsm4.meta["field_noise_std_ppm"]
    assert 0.0005 <= sigma <= 0.002
    std = noise[qsm4.mask].std()
    assert 0.5 * sigma < std < 3.0 * sigma
    assert abs(noise[qsm4.mask].mean()) < 0.2 * sigma


def test_b0_direction_is_a_tilted_unit_vector(qsm4) -> None:
    b0 = np.array(qsm4.b0_dir)
    assert np.linalg.norm(b0) == pytest.approx(1.0)
    assert qsm4.meta["b0_tilt_deg"] <= 25.0
    # diagonal RAS affine: array axes are world axes
    np.testing.assert_allclose(qsm4.b0_dir_world, qsm4.b0_dir, atol=1e-12)
    np.testing.assert_allclose(qsm4.meta["b0_dir"], b0, atol=1e-7)


def test_random_b0_direction_stays_in_the_cap() -> None:
    rng = np.random.default_rng(0)
    dirs = np.array([random_b0_direction(rng, 20.0) for _ in range(500)])
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    tilt = np.degrees(np.arccos(dirs[:, 2]))
    assert tilt.max() <= 20.0 + 1e-9
    assert tilt.max() > 15.0  # the whole cap is used
    np.testing.assert_allclose(random_b0_direction(rng, 0.0), [0.0, 0.0, 1.0])


def test_world_to_array_direction_with_a_permuted_flipped_grid() -> None:
    affine = np.array(
        [[-2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0, 0, 0, 1.0]]
    )
    np.testing.assert_allclose(world_to_array_direction([0, 0, 1], affine), [0, 1, 0])
    np.testing.assert_allclose(world_to_array_direction([1, 0, 0], affine), [-1, 0, 0])
    np.testing.assert_allclose(world_to_array_direction([0, 1, 0], affine), [0, 0, 1])


def test_magnitude_is_darker_in_iron_rich_nuclei(qsm4) -> None:
    assert qsm4.magnitude.min() >= 0
    assert np.all(qsm4.magnitude[qsm4.mask] >= 0)
    # R2* rises with positive susceptibility: the most paramagnetic voxels are dark
    chi, mag, m = qsm4.chi, qsm4.magnitude, qsm4.mask
    iron = m & (chi > 0.1)
    tissue = m & (np.abs(chi) < 0.01)
    assert np.median(mag[iron]) < np.median(mag[tissue])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tilt_deg": 100.0}, "max_tilt_deg must be in"),
        ({"field_noise_std": (0.002, 0.001)}, "field_noise_std must be"),
        ({"n_veins": (5, 2)}, "n_veins must be"),
    ],
)
def test_qsm_params_refuse_bad_ranges(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        QSMParams(**kwargs)


@pytest.mark.parametrize(
    ("seed", "error", "match"),
    [(-1, ValueError, "seed must be in"), (1.5, TypeError, "seed must be an integer")],
)
def test_bad_seed_is_refused(seed, error, match) -> None:
    with pytest.raises(error, match=match):
        simulate_qsm_subject(seed, 4.0)
