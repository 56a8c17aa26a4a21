"""``napari-fanet qsm``: data consistency switches and the B0 direction read from metadata."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.cli import main

CPU = ["--device", "cpu", "--tile", "32", "32", "32", "--no-progress"]


def qsm_argv(folder, out, *extra):
    return [
        "qsm",
        "--field",
        str(folder / "local_field.nii.gz"),
        "--mask",
        str(folder / "brain_mask.nii.gz"),
        "--model",
        "fanet-qsm",
        "--out",
        str(out),
        *CPU,
        *extra,
    ]


@pytest.fixture(scope="module")
def case(write_qsm_subject, tmp_path_factory):
    folder = tmp_path_factory.mktemp("qsm_case") / "sub"
    write_qsm_subject(folder, seed=3, b0_dir=(0.0, 0.3, 1.0))
    (folder / "meta.json").unlink()  # tests add the metadata they need
    return folder


def chi_of(out):
    return nib.load(out / "chi.nii.gz").get_fdata()


@pytest.fixture(scope="module")
def explicit(case, tmp_path_factory):
    out = tmp_path_factory.mktemp("explicit")
    assert main(qsm_argv(case, out, "--b0-dir", "0", "0.3", "1")) == 0
    return chi_of(out)


def test_no_data_consistency_gives_the_raw_map(case, explicit, tmp_path):
    assert (
        main(
            qsm_argv(case, tmp_path / "raw", "--b0-dir", "0", "0.3", "1", "--no-data-consistency")
        )
        == 0
    )
    raw = chi_of(tmp_path / "raw")
    assert np.isfinite(raw).all() and not np.allclose(raw, explicit)
    argv = qsm_argv(
        case,
        tmp_path / "k",
        "--b0-dir",
        "0",
        "0.3",
        "1",
        "--data-consistency",
        "kspace",
        "--dc-lambda",
        "1e6",
    )
    assert main(argv) == 0  # a huge lambda keeps the network's map
    np.testing.assert_allclose(chi_of(tmp_path / "k"), raw, atol=1e-4)


def test_b0_from_a_sidecar_and_from_meta_json(case, explicit, tmp_path, capsys):
    sidecar = case / "local_field.json"
    sidecar.write_text(json.dumps({"B0Dir": [0.0, 0.3, 1.0]}))
    try:
        assert main(qsm_argv(case, tmp_path / "a")) == 0
    finally:
        sidecar.unlink()
    assert f"B0 direction 0 0.3 1 (scanner axes) read from {sidecar}" in capsys.readouterr().err
    np.testing.assert_allclose(chi_of(tmp_path / "a"), explicit, atol=1e-5)
    meta = case / "meta.json"
    meta.write_text(json.dumps({"b0_dir": [0.0, -0.3, -1.0]}))  # array axes, opposite sign
    try:
        assert main(qsm_argv(case, tmp_path / "b")) == 0
    finally:
        meta.unlink()
    assert f"read from {meta}" in capsys.readouterr().err
    b = chi_of(tmp_path / "b")
    assert np.linalg.norm(b - explicit) / np.linalg.norm(explicit) < 0.01


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read it as JSON"),
        (
            json.dumps({"B0Dir": [0, 0, 0]}),
            "expected the B0 direction as 3 finite numbers, not all zero, got [0, 0, 0]",
        ),
        (
            json.dumps({"B0Dir": "up"}),
            "expected the B0 direction as 3 finite numbers, not all zero, got 'up'",
        ),
    ],
)
def test_bad_sidecar_exits_1_and_names_the_file(case, tmp_path, capsys, content, message):
    sidecar = case / "local_field.json"
    sidecar.write_text(content)
    try:
        assert main(qsm_argv(case, tmp_path / "out")) == 1
    finally:
        sidecar.unlink()
    err = capsys.readouterr().err
    assert str(sidecar) in err and message in err and "--b0-dir X Y Z" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_bad_dc_lambda_is_a_usage_error(case, tmp_path, capsys, value):
    assert main(qsm_argv(case, tmp_path / "out", "--dc-lambda", value)) == 2
    assert "--dc-lambda" in capsys.readouterr().err


def test_no_data_consistency_and_a_method_are_exclusive(case, tmp_path, capsys):
    argv = qsm_argv(case, tmp_path / "o", "--no-data-consistency", "--data-consistency", "kspace")
    assert main(argv) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_field_path_defaults_to_fanet_qsm(case, tmp_path, capsys):
    """Without ``--model`` a local field runs ``fanet-qsm`` (``--phase`` runs fanet-qsm-phase)."""
    argv = qsm_argv(case, tmp_path / "o", "--b0-dir", "0", "0.3", "1")
    i = argv.index("--model")
    del argv[i : i + 2]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "fanet-qsm"
