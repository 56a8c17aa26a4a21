"""Loading multi-echo GRE: 4D files or one file per echo, echo times from --te or sidecars."""

import json

import numpy as np
import pytest

from napari_fanet.io.nifti import load_volume, save_volume
from napari_fanet.physics.gre_io import load_multi_echo, read_echo_times, sidecar_path

SHAPE = (6, 5, 4)
AFFINE = np.diag([0.5, 0.5, 2.0, 1.0])


@pytest.fixture
def echoes():
    rng = np.random.default_rng(0)
    phase = rng.integers(-4096, 4096, size=(*SHAPE, 3)).astype(np.int16)
    mag = rng.uniform(0, 100, size=(*SHAPE, 3)).astype(np.float32)
    return phase, mag


def _write_per_echo(folder, name, data, times_s=None):
    paths = []
    for e in range(data.shape[3]):
        path = folder / f"{name}_echo-{e + 1}.nii.gz"
        save_volume(path, data[..., e], AFFINE)
        if times_s is not None:
            sidecar_path(path).write_text(json.dumps({"EchoTime": times_s[e]}))
        paths.append(path)
    return paths


def test_4d_files_with_te_in_ms(tmp_path, echoes):
    phase, mag = echoes
    save_volume(tmp_path / "phase.nii.gz", phase, AFFINE)
    save_volume(tmp_path / "mag.nii", mag, AFFINE)
    data = load_multi_echo(tmp_path / "phase.nii.gz", tmp_path / "mag.nii", te_ms=[4, 8, 12])
    np.testing.assert_array_equal(data.phase, phase)  # integers kept as stored
    np.testing.assert_allclose(data.magnitude, mag)
    np.testing.assert_allclose(data.echo_times_s, [0.004, 0.008, 0.012])
    assert data.te_source == "te_ms" and data.n_echoes == 3
    assert data.voxel_size == (0.5, 0.5, 2.0)
    # a derived map saved with the reference overlays the input
    save_volume(tmp_path / "local.nii.gz", np.ones(SHAPE, np.float32), data.reference)
    np.testing.assert_allclose(load_volume(tmp_path / "local.nii.gz").affine, AFFINE)


def test_per_echo_files_with_bids_sidecars(tmp_path, echoes):
    phase, mag = echoes
    phase_paths = _write_per_echo(tmp_path, "phase", phase, [0.005, 0.01, 0.015])
    mag_paths = _write_per_echo(tmp_path, "mag", mag)
    data = load_multi_echo([str(p) for p in phase_paths], mag_paths)
    np.testing.assert_array_equal(data.phase, phase)
    np.testing.assert_allclose(data.echo_times_s, [0.005, 0.01, 0.015])
    assert data.te_source == "sidecar"


def test_4d_sidecar_with_a_list_and_single_echo(tmp_path, echoes):
    phase, _ = echoes
    save_volume(tmp_path / "phase.nii.gz", phase, AFFINE)
    (tmp_path / "phase.json").write_text(json.dumps({"EchoTime": [0.004, 0.008, 0.012]}))
    assert load_multi_echo(tmp_path / "phase.nii.gz").echo_times_s.tolist() == [
        0.004,
        0.008,
        0.012,
    ]
    save_volume(tmp_path / "one.nii.gz", phase[..., 0], AFFINE)
    single = load_multi_echo(tmp_path / "one.nii.gz", te_ms=[20])
    assert single.phase.shape == (*SHAPE, 1) and single.magnitude is None


def test_sidecar_path():
    assert sidecar_path("a/sub-01_echo-1_phase.nii.gz").name == "sub-01_echo-1_phase.json"
    assert sidecar_path("b.NII").name == "b.json"


def test_loading_errors(tmp_path, echoes):
    phase, mag = echoes
    save_volume(tmp_path / "phase.nii.gz", phase, AFFINE)
    with pytest.raises(ValueError, match="no echo times: pass te_ms"):
        load_multi_echo(tmp_path / "phase.nii.gz")
    (tmp_path / "phase.json").write_text(json.dumps({"RepetitionTime": 0.03}))
    with pytest.raises(ValueError, match="expected a JSON object with EchoTime"):
        load_multi_echo(tmp_path / "phase.nii.gz")
    (tmp_path / "phase.json").write_text(json.dumps({"EchoTime": 0.004}))
    with pytest.raises(ValueError, match="give 1 EchoTime value"):
        load_multi_echo(tmp_path / "phase.nii.gz")
    with pytest.raises(ValueError, match="expected 3 echo time"):
        load_multi_echo(tmp_path / "phase.nii.gz", te_ms=[4, 8])
    save_volume(tmp_path / "mag2.nii.gz", mag[..., :2], AFFINE)
    with pytest.raises(ValueError, match="magnitude has 2 echo"):
        load_multi_echo(tmp_path / "phase.nii.gz", tmp_path / "mag2.nii.gz", te_ms=[4, 8, 12])
    save_volume(tmp_path / "shifted.nii.gz", mag, np.diag([1.0, 0.5, 2.0, 1.0]))
    with pytest.raises(ValueError, match="does not match"):
        load_multi_echo(tmp_path / "phase.nii.gz", tmp_path / "shifted.nii.gz", te_ms=[4, 8, 12])
    with pytest.raises(ValueError, match="got none"):
        load_multi_echo([], te_ms=[4])
    with pytest.raises(ValueError, match="expected a 3D volume"):  # per-echo files must be 3D
        load_multi_echo([tmp_path / "phase.nii.gz", tmp_path / "phase.nii.gz"], te_ms=[4, 8])


def test_read_echo_times_counts(tmp_path, echoes):
    phase, _ = echoes
    paths = _write_per_echo(tmp_path, "p", phase, [0.004, 0.008, 0.012])
    np.testing.assert_allclose(read_echo_times(paths, 3), [0.004, 0.008, 0.012])
    with pytest.raises(ValueError, match="give 3 EchoTime value"):
        read_echo_times(paths, 2)
