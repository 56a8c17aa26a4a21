"""NIfTI input and output never silently change an image: damaged gzip streams are refused,
qform and sform are kept as they were, and grid mismatches say what differs."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.io.nifti import Volume, check_same_grid, load_volume, save_volume

SHAPE = (20, 18, 16)


def _data(seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def _damage_middle(path, out):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the deflate stream
    out.write_bytes(bytes(raw))
    return out


def test_damaged_gzip_stream_is_refused_not_half_read(tmp_path):
    good = save_volume(tmp_path / "good.nii.gz", _data(), np.eye(4))
    bad = _damage_middle(good, tmp_path / "bad.nii.gz")
    # nibabel alone reads it without complaint (it stops before the CRC in the gzip trailer)
    img = nib.load(bad)
    np.asanyarray(img.dataobj)
    with pytest.raises(
        ValueError,
        match=r"^FLAIR: expected an intact gzip-compressed NIfTI file, got a damaged one \(.+\); "
        r"copy or export the file again$",
    ):
        load_volume(bad, name="FLAIR")
    np.testing.assert_array_equal(load_volume(good).data, _data())


def test_gzip_with_a_wrong_crc_is_refused(tmp_path):
    good = save_volume(tmp_path / "good.nii.gz", _data(), np.eye(4))
    raw = bytearray(good.read_bytes())
    raw[-8] ^= 0x01  # the CRC-32 of the trailer: the data are intact, the check fails
    bad = tmp_path / "crc.nii.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"crc\.nii\.gz: expected an intact gzip.*CRC check"):
        load_volume(bad)


def test_truncated_gzip_is_refused(tmp_path):
    good = save_volume(tmp_path / "good.nii.gz", _data(), np.eye(4))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"cut\.nii\.gz: expected (an intact gzip|a readable)"):
        load_volume(cut)


def test_a_plain_nii_is_not_read_as_gzip(tmp_path):
    path = save_volume(tmp_path / "plain.nii", _data(), np.eye(4))
    with pytest.raises(gzip.BadGzipFile):
        gzip.open(path).read()
    np.testing.assert_array_equal(load_volume(path).data, _data())


def _with_distinct_forms(path):
    """A file whose qform (scanner, shifted) differs from its sform (aligned)."""
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    sform[:3, 3] = (-20.0, -18.0, -16.0)
    qform = sform.copy()
    qform[:3, 3] += (1.5, -2.0, 0.5)
    img = nib.Nifti1Image(_data(), sform)
    img.header.set_qform(qform, code=1)
    img.header.set_sform(sform, code=2)
    nib.save(img, path)
    return qform, sform


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_save_keeps_a_qform_that_differs_from_the_sform(tmp_path, suffix):
    qform, sform = _with_distinct_forms(tmp_path / f"in{suffix}")
    vol = load_volume(tmp_path / f"in{suffix}")
    np.testing.assert_array_equal(vol.affine, sform)  # the sform wins, as in nibabel
    out = save_volume(tmp_path / f"mask{suffix}", vol.data > 0, vol)
    hdr = nib.load(out).header
    np.testing.assert_allclose(hdr.get_qform(), qform, atol=1e-5)
    np.testing.assert_allclose(hdr.get_sform(), sform, atol=1e-6)
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 2)


def test_save_sets_both_forms_when_the_affine_is_new(tmp_path):
    _with_distinct_forms(tmp_path / "in.nii.gz")
    vol = load_volume(tmp_path / "in.nii.gz")
    moved = vol.affine.copy()
    moved[:3, 3] += 10.0
    out = save_volume(tmp_path / "moved.nii.gz", vol.data, Volume(vol.data, moved, vol.header))
    hdr = nib.load(out).header
    np.testing.assert_allclose(hdr.get_qform(), moved, atol=1e-5)
    np.testing.assert_allclose(hdr.get_sform(), moved, atol=1e-6)


def test_voxel_size_mismatch_is_named_as_such():
    one = Volume(np.zeros(SHAPE), np.diag([1.0, 1.0, 1.0, 1.0]))
    two = Volume(np.zeros(SHAPE), np.diag([1.0, 1.0, 2.5, 1.0]))
    with pytest.raises(
        ValueError,
        match=r"^T2 does not match T1: expected the same voxel size, got \(1, 1, 2\.5\) mm vs "
        r"\(1, 1, 1\) mm$",
    ):
        check_same_grid({"T1": one, "T2": two})
