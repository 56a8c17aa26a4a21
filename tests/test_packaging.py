"""Packaging: the napari manifest is found by npe2 when installed editable and from a wheel."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from importlib.metadata import distribution, version
from pathlib import Path

import pytest

import napari_fanet

#: Packaging, benchmark smoke runs, DDP and the demo: run by default, deselect with
#: ``-m "not integration"``.
pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_NAME = "napari-fanet"
BIN = Path(sys.executable).parent  # the scripts of the environment running the tests


def _assert_valid(proc: subprocess.CompletedProcess[str]) -> None:
    """npe2 said the manifest is valid ("... valid!"), and nowhere "invalid"."""
    text = (proc.stdout + proc.stderr).lower()
    assert "valid!" in text, text
    assert "invalid" not in text, text


def _run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, failing the test with its output if it exits non-zero."""
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, **kwargs
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def _clean_env() -> dict[str, str]:
    """Environment for a child interpreter that must not see this checkout or user site."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


# -- installed (editable) package --------------------------------------------------------------


def test_version_matches_distribution() -> None:
    assert napari_fanet.__version__ == version(PLUGIN_NAME)


def test_entry_point_points_at_the_manifest() -> None:
    eps = [ep for ep in distribution(PLUGIN_NAME).entry_points if ep.group == "napari.manifest"]
    assert [(ep.name, ep.value) for ep in eps] == [(PLUGIN_NAME, "napari_fanet:napari.yaml")]


def test_npe2_validate_installed() -> None:
    # --imports also imports every python_name the manifest contributes (readers, widgets...).
    proc = _run([BIN / "npe2", "validate", PLUGIN_NAME, "--imports"])
    _assert_valid(proc)


def test_npe2_plugin_manager_discovers_plugin() -> None:
    from npe2 import PluginManager

    pm = PluginManager()  # a private instance: leaves the global one alone
    pm.discover()
    names = {mf.name for mf in pm.iter_manifests()}
    assert PLUGIN_NAME in names
    manifest = pm.get_manifest(PLUGIN_NAME)
    assert manifest.package_metadata is not None
    assert manifest.package_metadata.version == napari_fanet.__version__


# -- built distributions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build an sdist, and a wheel *from that sdist*, with ``python -m build`` (isolated)."""
    outdir = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", outdir, REPO_ROOT], env=_clean_env())
    (sdist,) = outdir.glob("napari_fanet-*.tar.gz")
    (wheel,) = outdir.glob("napari_fanet-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_contains_manifest_as_real_file(built_dists: dict[str, Path]) -> None:
    expected = (REPO_ROOT / "napari.yaml").read_bytes()
    with zipfile.ZipFile(built_dists["wheel"]) as whl:
        info = whl.getinfo("napari_fanet/napari.yaml")
        mode = info.external_attr >> 16
        assert not stat.S_ISLNK(mode), "napari.yaml is stored in the wheel as a symlink"
        assert whl.read(info) == expected
        entry_points = next(n for n in whl.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = whl.read(entry_points).decode()
    assert "[napari.manifest]" in text
    assert f"{PLUGIN_NAME} = napari_fanet:napari.yaml" in text


def test_wheel_carries_the_sample_data(built_dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(built_dists["wheel"]) as whl:
        names = set(whl.namelist())
        for case in ("ms/sub-0000/flair.nii.gz", "qsm/sub-0000/local_field.nii.gz"):
            packaged = whl.read(f"napari_fanet/sample_data/{case}")
            assert packaged == (REPO_ROOT / "sample_data" / case).read_bytes()
    assert {
        "napari_fanet/sample_data/baselines.json",
        "napari_fanet/sample_data/ms/sub-0000/lesion_mask.nii.gz",
        "napari_fanet/sample_data/qsm/sub-0000/meta.json",
    } <= names


def test_wheel_manifest_found_by_npe2_in_fresh_venv(
    built_dists: dict[str, Path], tmp_path: Path
) -> None:
    """Install only the wheel and npe2 into a new venv; npe2 must find and validate the plugin.

    The venv has no access to this checkout, the editable install or its site-packages, so this
    proves the manifest travels inside the wheel (the symlink in src/ is resolved at build time).
    npe2 and its dependencies are pinned to the versions of the running environment so pip can
    reuse its cache.
    """
    venv = tmp_path / "venv"
    env = _clean_env()
    env.pop("VIRTUAL_ENV", None)
    _run([sys.executable, "-m", "venv", venv], env=env)
    vpy = venv / "bin" / "python"

    freeze = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], env=env).stdout
    pins = tmp_path / "pins.txt"
    pins.write_text(
        "\n".join(line for line in freeze.splitlines() if "==" in line and " @ " not in line)
    )
    pip = [vpy, "-m", "pip", "install", "--quiet", "--no-input"]
    _run([*pip, "--no-deps", built_dists["wheel"]], env=env, cwd=tmp_path)
    _run([*pip, "-c", pins, f"npe2=={version('npe2')}"], env=env, cwd=tmp_path)

    # The installed napari_fanet is the wheel's, inside the new venv, and torch is absent there.
    where = _run(
        [vpy, "-c", "import napari_fanet, sys; print(napari_fanet.__file__)"],
        env=env,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    manifest_file = Path(where).parent / "napari.yaml"
    assert not manifest_file.is_symlink()
    assert manifest_file.read_bytes() == (REPO_ROOT / "napari.yaml").read_bytes()

    # The sample data is found inside the installed package (sample_files needs no numpy).
    code = "from napari_fanet.evaluation.sample_files import sample_data_folder as f; print(f())"
    data = _run(
        [vpy, "-c", code],
        env=env,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(data) == Path(where).parent / "sample_data"

    proc = _run([venv / "bin" / "npe2", "validate", PLUGIN_NAME], env=env, cwd=tmp_path)
    _assert_valid(proc)
    found = _run(
        [
            vpy,
            "-c",
            "from npe2 import PluginManager; pm = PluginManager(); pm.discover(); "
            "print(pm.get_manifest('napari-fanet').name)",
        ],
        env=env,
        cwd=tmp_path,
    ).stdout.strip()
    assert found == PLUGIN_NAME


def test_sdist_contains_manifest(built_dists: dict[str, Path]) -> None:
    import tarfile

    with tarfile.open(built_dists["sdist"]) as sdist:
        names = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"napari.yaml", "src/napari_fanet/napari.yaml", "pyproject.toml"} <= names
