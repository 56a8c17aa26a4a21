"""NIfTI load/save, grid checks and canonical reorientation (napari_fanet.io.nifti)."""

from __future__ import annotations

import logging
import os

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.io import nifti as fio
from napari_fanet.io.nifti import (
    MSStudy,
    Orientation,
    Volume,
    check_same_grid,
    from_canonical,
    load_ms_study,
    load_volume,
    save_volume,
    to_canonical,
)

SHAPE = (5, 6, 7)  # distinct sizes, so a wrong transpose cannot go unnoticed


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


def _affine(linear: np.ndarray, offset=(-10.0, 20.0, 5.5)) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = linear
    out[:3, 3] = offset
    return out


AFFINES = {
    "identity": np.eye(4),
    "oblique": _affine(_rotation(np.radians(20), np.radians(60)) @ np.diag([1.0, 1.2, 2.0])),
    "slightly_oblique": _affine(_rotation(np.radians(10), np.radians(-15))),
    "flipped": _affine(np.diag([-1.0, -1.0, 1.0])),
    "anisotropic": _affine(np.diag([1.0, 1.0, 3.0])),
    # sagittal-like acquisition: axes permuted and two of them reversed
    "permuted": _affine(np.array([[0.0, 0.0, -2.0], [1.0, 0.0, 0.0], [0.0, -1.5, 0.0]])),
}


def _data(shape=SHAPE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _write(path, data, affine=None, header=None):
    affine = np.eye(4) if affine is None else affine
    nib.save(nib.Nifti1Image(data, affine, header=header), path)
    return path


# ---------------------------------------------------------------- load / save round trips


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("kind", list(AFFINES))
def test_round_trip(tmp_path, kind, suffix):
    data, affine = _data(), AFFINES[kind]
    src = _write(tmp_path / f"src{suffix}", data, affine)
    vol = load_volume(src)
    assert vol.shape == SHAPE and vol.ndim == 3 and vol.path == src
    assert vol.data.dtype == np.float32 and vol.affine.dtype == np.float64
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    expected_sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(vol.voxel_size, expected_sizes, rtol=1e-5)

    out = save_volume(tmp_path / f"out{suffix}", vol.data * 2, vol)
    assert out == tmp_path / f"out{suffix}"
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".nii.gz")
    back = load_volume(out)
    np.testing.assert_array_equal(back.data, data * 2)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    assert img.header["sform_code"] > 0 and img.header["qform_code"] > 0
    np.testing.assert_allclose(img.header.get_qform(), vol.affine, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, out.name])


@pytest.mark.parametrize(
    ("values", "expected_dtype"),
    [
        (np.zeros(SHAPE, bool), np.uint8),
        (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 4, np.uint8),
        (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 4 - 5, np.int16),
        (np.full(SHAPE, 70_000, np.int64), np.int32),
        (np.full(SHAPE, 2**40, np.int64), np.int64),
        (_data().astype(np.float64), np.float32),
    ],
)
def test_save_default_dtypes(tmp_path, values, expected_dtype):
    values = values.copy()
    values.flat[0] = 1  # a bool mask with one voxel set
    out = save_volume(tmp_path / "x.nii.gz", values, np.eye(4))
    img = nib.load(out)
    assert img.get_data_dtype() == expected_dtype
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), values.astype(expected_dtype))


def test_save_explicit_dtype(tmp_path):
    out = save_volume(tmp_path / "x.nii", np.ones(SHAPE, np.float32), np.eye(4), dtype=np.int16)
    assert nib.load(out).get_data_dtype() == np.int16


def test_save_resets_reference_scaling_and_window(tmp_path):
    raw = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    img = nib.Nifti1Image(raw, AFFINES["oblique"])
    img.header.set_slope_inter(2.0, 10.0)
    img.header["cal_max"] = 1000
    nib.save(img, tmp_path / "scaled.nii.gz")
    vol = load_volume(tmp_path / "scaled.nii.gz")
    np.testing.assert_array_equal(vol.data, raw * 2.0 + 10.0)  # scaling applied on load

    mask = vol.data > 50
    out = save_volume(tmp_path / "mask.nii.gz", mask, vol)
    saved = nib.load(out)
    assert saved.get_data_dtype() == np.uint8
    assert saved.header["cal_max"] == 0
    np.testing.assert_array_equal(saved.get_fdata(), mask)
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), mask)


def test_load_keeps_stored_dtype_in_native_order(tmp_path):
    labels = (np.arange(np.prod(SHAPE)) % 7).reshape(SHAPE).astype(np.int16)
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(np.int16)
    _write(tmp_path / "labels.nii", labels, header=header)
    assert nib.load(tmp_path / "labels.nii").get_data_dtype() == np.dtype(">i2")
    vol = load_volume(tmp_path / "labels.nii", dtype=None)
    assert vol.data.dtype == np.int16 and vol.data.dtype.isnative
    np.testing.assert_array_equal(vol.data, labels)
    vol.data[0, 0, 0] = 3  # writeable


@pytest.mark.parametrize("shape", [(*SHAPE, 1), (*SHAPE, 1, 1)])
def test_trailing_singletons_are_dropped(tmp_path, shape):
    data = _data(shape)
    vol = load_volume(_write(tmp_path / "t.nii.gz", data))
    assert vol.data.shape == SHAPE and vol.ndim == 3
    np.testing.assert_array_equal(vol.data, data.reshape(SHAPE))


def test_4d_needs_allow_4d(tmp_path):
    path = _write(tmp_path / "dwi.nii.gz", _data((*SHAPE, 2)))
    with pytest.raises(
        ValueError,
        match=r"dwi\.nii\.gz: expected a 3D volume, got 4D data of shape \(5, 6, 7, 2\).*allow_4d",
    ):
        load_volume(path)
    vol = load_volume(path, allow_4d=True)
    assert vol.ndim == 4 and vol.shape == SHAPE and vol.data.shape == (*SHAPE, 2)


# ---------------------------------------------------------------- load refusals


@pytest.mark.parametrize(
    ("filename", "data", "kwargs", "match"),
    [
        (
            "flat.nii",
            _data((6, 7)),
            {},
            r"flat\.nii: expected a 3D volume, got 2D data .*\(6, 7\)",
        ),
        (
            "five.nii.gz",
            _data((2, 3, 4, 2, 2)),
            {"allow_4d": True},
            r"five\.nii\.gz: expected a 3D or 4D volume, got 5D data of shape \(2, 3, 4, 2, 2\)",
        ),
        (
            "cplx.nii.gz",
            _data().astype(np.complex64),
            {},
            r"cplx\.nii\.gz: expected real-valued voxels, got complex64",
        ),
        (
            "nan.nii.gz",
            np.full(SHAPE, np.nan, np.float32),
            {},
            r"nan\.nii\.gz: expected finite intensities, got no finite voxel \(all 210 are NaN",
        ),
        ("flat.nii", _data((6, 7)), {"name": "T1 scan"}, r"^T1 scan: expected a 3D volume"),
    ],
)
def test_load_refuses(tmp_path, filename, data, kwargs, match):
    path = _write(tmp_path / filename, data)
    with pytest.raises(ValueError, match=match):
        load_volume(path, **kwargs)


def _patch_header(path, **fields):
    header = nib.load(path).header.copy()
    for key, value in fields.items():
        header[key] = value
    with open(path, "r+b") as fh:
        fh.write(header.binaryblock)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"srow_x": [np.nan, 0, 0, 0]}, r"bad\.nii: expected a finite affine, got \[\[nan"),
        ({"srow_y": [0, 0, 0, np.inf]}, r"bad\.nii: expected a finite affine, got .*inf"),
        ({"srow_x": [0, 0, 0, 0]}, r"bad\.nii: expected an invertible affine"),
    ],
)
def test_load_refuses_bad_affine(tmp_path, fields, match):
    path = _write(tmp_path / "bad.nii", _data())
    _patch_header(path, sform_code=1, **fields)
    with pytest.raises(ValueError, match=match):
        load_volume(path)


@pytest.mark.parametrize("filename", ["scan.mgz", "scan.nii.bz2", "scan", ".nii"])
def test_load_refuses_extension(tmp_path, filename):
    with pytest.raises(ValueError, match=rf"{filename}: expected a NIfTI file ending in .nii or"):
        load_volume(tmp_path / filename)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.nii\.gz: file not found"):
        load_volume(tmp_path / "missing.nii.gz")


@pytest.mark.parametrize("filename", ["junk.nii", "junk.nii.gz", "truncated.nii"])
def test_load_refuses_unreadable_file(tmp_path, filename):
    path = tmp_path / filename
    if filename.startswith("truncated"):
        _write(path, _data())
        path.write_bytes(path.read_bytes()[:400])
    else:
        path.write_bytes(b"this is not a NIfTI image" * 20)
    with pytest.raises(ValueError, match=rf"{filename}: expected a readable NIfTI image, got"):
        load_volume(path)


def test_partial_nans_become_zero_with_a_log_record(tmp_path, caplog):
    data = _data()
    data[0, 0, :3] = np.nan
    data[1, 1, 1] = np.inf
    path = _write(tmp_path / "holes.nii.gz", data)
    with caplog.at_level(logging.WARNING, logger="napari_fanet.io.nifti"):
        vol = load_volume(path)
    assert np.all(vol.data[0, 0, :3] == 0) and vol.data[1, 1, 1] == 0
    np.testing.assert_array_equal(vol.data[2:], data[2:])
    messages = [r.getMessage() for r in caplog.records if r.name == "napari_fanet.io.nifti"]
    assert messages == ["holes.nii.gz: replaced 4 non-finite (NaN or Inf) voxels of 210 with 0"]


# ---------------------------------------------------------------- save refusals


@pytest.fixture
def ref(tmp_path) -> Volume:
    return load_volume(_write(tmp_path / "ref.nii.gz", _data(), AFFINES["oblique"]))


@pytest.mark.parametrize(
    ("filename", "data", "kwargs", "match"),
    [
        ("m.nii.gz", np.zeros((4, 4, 4)), {}, r"m\.nii\.gz: data shape \(4, 4, 4\) .*\(5, 6, 7\)"),
        ("m.nii.gz", np.zeros((5, 6)), {}, r"m\.nii\.gz: expected 3D \(or 4D\) data, got 2D"),
        ("m.png", np.zeros(SHAPE), {}, r"m\.png: expected a NIfTI file ending in"),
        (
            "m.nii",
            np.where(np.eye(5, 6, dtype=bool)[..., None], np.nan, np.zeros(SHAPE)),
            {},
            r"m\.nii: expected finite values, got 35 NaN/Inf of 210",
        ),
        ("m.nii", np.zeros(SHAPE, np.complex64), {}, r"m\.nii: expected real-valued data, got"),
        (
            "m.nii",
            np.full(SHAPE, 300),
            {"dtype": np.uint8},
            r"m\.nii: expected values that uint8 can store, got values in \[300, 300\]",
        ),
        (
            "m.nii",
            np.full(SHAPE, 0.5),
            {"dtype": np.int16},
            r"m\.nii: expected values that int16 can store, got values in \[0\.5, 0\.5\]",
        ),
        (
            "m.nii",
            np.full(SHAPE, 1e300),
            {},
            r"m\.nii: expected values that float32 can store, got .*\[1e\+300, 1e\+300\]",
        ),
        ("m.nii", np.zeros(SHAPE), {"dtype": np.float16}, r"m\.nii: expected a NIfTI data type"),
    ],
)
def test_save_refuses(tmp_path, ref, filename, data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        save_volume(tmp_path / filename, data, ref, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.nii.gz"]


@pytest.mark.parametrize(
    ("reference", "match"),
    [
        ("ref.nii.gz", r"m\.nii: expected a Volume or a 4x4 affine array as reference, got str"),
        (np.eye(3), r"m\.nii: reference: expected a 4x4 affine, got an array of shape \(3, 3\)"),
        (np.full((4, 4), np.nan), r"m\.nii: reference: expected a finite affine"),
    ],
)
def test_save_refuses_bad_reference(tmp_path, reference, match):
    error = TypeError if isinstance(reference, str) else ValueError
    with pytest.raises(error, match=match):
        save_volume(tmp_path / "m.nii", np.zeros(SHAPE), reference)


def test_save_refuses_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"m\.nii: cannot save, folder .*nowhere"):
        save_volume(tmp_path / "nowhere" / "m.nii", np.zeros(SHAPE), np.eye(4))


def test_save_with_plain_affine_sets_scanner_codes(tmp_path):
    affine = AFFINES["permuted"]
    out = save_volume(tmp_path / "m.nii", np.ones(SHAPE, bool), affine)
    header = nib.load(out).header
    assert header["qform_code"] == 1 and header["sform_code"] == 1
    np.testing.assert_allclose(header.get_sform(), affine)
    np.testing.assert_allclose(header.get_qform(), affine, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("failing", ["replace", "save"])
def test_atomic_save_keeps_old_file(tmp_path, monkeypatch, suffix, failing):
    target = save_volume(tmp_path / f"out{suffix}", np.zeros(SHAPE), np.eye(4))
    before = target.read_bytes()
    seen = []

    def boom(src, dst):
        seen.append(os.fspath(src))
        if failing == "save":  # fail half way through writing the temporary file
            with open(dst, "wb") as fh:
                fh.write(b"partial")
        raise OSError("disk full")

    if failing == "replace":
        monkeypatch.setattr(fio.os, "replace", boom)
    else:
        monkeypatch.setattr(fio.nib, "save", lambda img, fname: boom(fname, fname))
    with pytest.raises(OSError, match="disk full"):
        save_volume(target, np.ones(SHAPE), np.eye(4))
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    # the temporary file was hidden, in the same folder, with the destination's suffix
    assert os.path.dirname(seen[0]) == os.fspath(tmp_path)
    assert os.path.basename(seen[0]).startswith(f".out{suffix}.")
    assert seen[0].endswith(f".tmp{suffix}")


# ---------------------------------------------------------------- grids and MS studies


def _study_files(tmp_path, flair_shape=SHAPE, t2_shift=0.0):
    affine = AFFINES["anisotropic"]
    shifted = affine.copy()
    shifted[0, 3] += t2_shift
    return (
        _write(tmp_path / "t1.nii.gz", _data(seed=1), affine),
        _write(tmp_path / "t2.nii.gz", _data(seed=2), shifted),
        _write(tmp_path / "flair.nii.gz", _data(flair_shape, seed=3), affine),
    )


def test_ms_study_matching(tmp_path):
    t1, t2, flair = _study_files(tmp_path)
    study = load_ms_study(t1, load_volume(t2), str(flair))
    assert isinstance(study, MSStudy)
    assert study.t1.shape == study.t2.shape == study.flair.shape == SHAPE
    assert study.flair.path == flair and study.t1.voxel_size == (1.0, 1.0, 3.0)
    study = load_ms_study(t1, t2, flair, atol=0.6)
    assert study.t2.data.dtype == np.float32


def test_ms_study_shape_mismatch(tmp_path):
    files = _study_files(tmp_path, flair_shape=(5, 6, 8))
    with pytest.raises(
        ValueError,
        match=r"FLAIR \(flair\.nii\.gz\) does not match T1 \(t1\.nii\.gz\): expected the same "
        r"voxel grid, got shape \(5, 6, 8\) vs \(5, 6, 7\)",
    ):
        load_ms_study(*files)


def test_ms_study_affine_mismatch(tmp_path):
    files = _study_files(tmp_path, t2_shift=0.5)
    with pytest.raises(
        ValueError,
        match=r"T2 \(t2\.nii\.gz\) does not match T1 \(t1\.nii\.gz\): expected the same affine, "
        r"got entries differing by up to 0\.5 \(atol=0\.001\)",
    ):
        load_ms_study(*files)


def test_ms_study_refuses_4d_volume_and_bad_files(tmp_path):
    t1, t2, flair = _study_files(tmp_path)
    four = Volume(_data((*SHAPE, 2)), np.eye(4))
    with pytest.raises(
        ValueError, match=r"^T2: expected a 3D volume, got 4D data of shape \(5, 6, 7, 2\)$"
    ):
        load_ms_study(t1, four, flair)
    flat = _write(tmp_path / "flat.nii", _data((5, 6)))
    with pytest.raises(ValueError, match=r"^FLAIR \(flat\.nii\): expected a 3D volume, got 2D"):
        load_ms_study(t1, t2, flat)


def test_check_same_grid_arguments():
    vol = Volume(_data(), np.eye(4))
    check_same_grid({})
    check_same_grid({"field": vol, "mask": Volume(np.ones(SHAPE), np.eye(4) + 1e-4)})
    with pytest.raises(TypeError, match=r"mask: expected a Volume, got ndarray"):
        check_same_grid({"field": vol, "mask": np.ones(SHAPE)})
    with pytest.raises(ValueError, match=r"atol must be a non-negative number, got -1"):
        check_same_grid({"field": vol}, atol=-1)


@pytest.mark.parametrize(
    ("data", "affine", "match"),
    [
        (
            np.zeros((3, 3)),
            np.eye(4),
            r"Volume data: expected 3D or 4D data, got 2D data of shape \(3, 3\)",
        ),
        (np.zeros(SHAPE), np.eye(3), r"Volume affine: expected a 4x4 affine"),
        (np.zeros(SHAPE), np.diag([1, 1, np.nan, 1]), r"Volume affine: expected a finite affine"),
        (np.zeros(SHAPE), np.diag([1, 0, 1, 1]), r"Volume affine: expected an invertible"),
    ],
)
def test_volume_validates(data, affine, match):
    with pytest.raises(ValueError, match=match):
        Volume(data, affine)


# ---------------------------------------------------------------- canonical orientation


def _ijk_grid(shape) -> np.ndarray:
    return np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1).reshape(-1, 3)


@pytest.mark.parametrize("kind", list(AFFINES))
def test_canonical_round_trip_matches_nibabel(tmp_path, kind):
    path = _write(tmp_path / "src.nii.gz", _data(), AFFINES[kind])
    vol = load_volume(path)
    canonical, orientation = to_canonical(vol)
    assert isinstance(orientation, Orientation) and hash(orientation) is not None
    assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
    assert canonical.data.flags.c_contiguous and canonical.path == path
    assert canonical.shape == orientation.canonical_shape
    assert orientation.is_identity == (kind in ("identity", "anisotropic", "slightly_oblique"))
    reference = nib.as_closest_canonical(nib.load(path))  # independent implementation
    np.testing.assert_array_equal(canonical.data, reference.get_fdata())
    np.testing.assert_allclose(canonical.affine, reference.affine, atol=1e-6)
    back = from_canonical(canonical.data, orientation)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, vol.data)


@pytest.mark.parametrize("kind", list(AFFINES))
def test_to_canonical_keeps_world_coordinates(kind):
    vol = Volume(_data(), AFFINES[kind])
    canonical, _ = to_canonical(vol)
    ijk = _ijk_grid(vol.shape)
    world = ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    ijk_c = (world - canonical.affine[:3, 3]) @ np.linalg.inv(canonical.affine[:3, :3]).T
    np.testing.assert_allclose(ijk_c, np.round(ijk_c), atol=1e-6)  # lands on voxel centres
    ijk_c = np.round(ijk_c).astype(int)
    np.testing.assert_array_equal(canonical.data[tuple(ijk_c.T)], vol.data[tuple(ijk.T)])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("kind", list(AFFINES))
def test_canonical_mask_lines_up_with_source(tmp_path, kind, suffix):
    data = np.zeros(SHAPE, np.float32)
    bright = (1, 4, 5)
    data[bright] = 100.0
    source = load_volume(_write(tmp_path / f"src{suffix}", data, AFFINES[kind]))
    canonical, orientation = to_canonical(source)
    mask = canonical.data > 50  # "model output", computed on the canonical grid
    out = save_volume(tmp_path / f"mask{suffix}", from_canonical(mask, orientation), source)
    saved = nib.load(out)
    found = np.argwhere(np.asanyarray(saved.dataobj) == 1)
    assert found.tolist() == [list(bright)]
    world_saved = saved.affine @ [*found[0], 1]
    world_source = nib.load(tmp_path / f"src{suffix}").affine @ [*bright, 1]
    np.testing.assert_allclose(world_saved, world_source, atol=1e-4)


def test_from_canonical_refuses_wrong_shape():
    _, orientation = to_canonical(Volume(_data(), AFFINES["permuted"]))
    assert orientation.canonical_shape == (7, 5, 6)
    with pytest.raises(ValueError, match=r"canonical shape \(7, 5, 6\), got shape \(5, 6, 7\)"):
        from_canonical(_data(), orientation)
