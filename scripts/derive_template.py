"""Derive the small MNI152 2009 phantom template shipped in ``napari_fanet.simulation``.

Run once by a developer (nilearn is NOT a dependency of napari-fanet, and nothing is downloaded
here: the files come from inside the installed nilearn wheel)::

    pip install nilearn
    python scripts/derive_template.py            # writes src/napari_fanet/simulation/data/

Input: the three ICBM 2009a nonlinear symmetric images that nilearn ships in
``nilearn/datasets/data/`` (1 mm, 197 x 233 x 189, RAS, uint8):
``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz`` (skull-stripped T1),
``mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz`` and
``mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz`` (grey/white matter probabilities).

Output: ``mni152_2009_2mm.npz`` on the standard 2 mm MNI box (91 x 109 x 91 voxels, RAS affine
``diag(2, 2, 2)`` with origin (-90, -126, -72) mm), every map stored as uint8 (0..255 = 0..1):

- ``t1``: the T1 template, rescaled to its maximum (as nilearn's ``load_mni152_template``);
- ``gm``, ``wm``: the probability maps;
- ``csf``: ``clip(1 - gm - wm, 0, 1)`` inside the brain mask (nilearn ships no CSF map);
- ``mask``: the brain mask, ``t1 > 0.2`` (nilearn's ``load_mni152_brain_mask`` rule), holes
  filled, 0/1;

plus ``affine`` (float64 4x4) and ``source`` (file names and nilearn version). The 1 mm maps are
smoothed with a Gaussian (sigma 0.85 mm) before taking every second voxel (the 2 mm grid points
fall on 1 mm voxel centres, so no interpolation is needed). The copyright notice of the template
is written next to it as ``NOTICE-mni152-2009.txt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "src" / "napari_fanet" / "simulation" / "data"
NPZ_NAME = "mni152_2009_2mm.npz"
NOTICE_NAME = "NOTICE-mni152-2009.txt"
FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# The standard 2 mm MNI bounding box (as FSL's MNI152_T1_2mm), in RAS orientation.
OUT_SHAPE = (91, 109, 91)
OUT_ORIGIN = (-90.0, -126.0, -72.0)
OUT_VOXEL = 2.0
SMOOTH_SIGMA_MM = 0.85
MASK_THRESHOLD = 0.2

NOTICE = """\
MNI ICBM 2009a nonlinear symmetric template (McConnell Brain Imaging Centre)
==========================================================================

napari_fanet/simulation/data/mni152_2009_2mm.npz is a derived, down-sampled (2 mm) copy of the
T1-weighted template and the grey- and white-matter probability maps of the MNI ICBM152 2009a
nonlinear symmetric atlas, taken from the copies that nilearn ships in its wheel
(nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz; nilearn's own
dataset description lists the licence of these files as "unknown" and points to
http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009). The CSF map and the brain mask in
the .npz file are computed from them (see scripts/derive_template.py). The original atlas is
distributed by the McConnell Brain Imaging Centre under the following notice:

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University. Permission to use, copy, modify, and distribute this software and
its documentation for any purpose and without fee is hereby granted, provided that the above
copyright notice appear in all copies. The authors and McGill University make no representations
about the suitability of this software for any purpose. It is provided "as is" without express
or implied warranty. The authors are not responsible for any data loss, equipment damage,
property loss, or injury to subjects or patients resulting from the use or misuse of this
software package.

References
----------
- V.S. Fonov, A.C. Evans, R.C. McKinstry, C.R. Almli and D.L. Collins. Unbiased nonlinear
  average age-appropriate brain templates from birth to adulthood. NeuroImage 47, Supplement 1:
  S102 (2009), Organization for Human Brain Mapping 2009 Annual Meeting.
- V. Fonov, A.C. Evans, K. Botteron, C.R. Almli, R.C. McKinstry, D.L. Collins and the Brain
  Development Cooperative Group. Unbiased average age-appropriate atlases for pediatric studies.
  NeuroImage 54(1): 313-327 (2011).
- D.L. Collins, A.P. Zijdenbos, W.F.C. Baaré and A.C. Evans. ANIMAL+INSECT: Improved cortical
  structure segmentation. IPMI 1999, Lecture Notes in Computer Science 1613: 210-223.
"""


def find_nilearn_data() -> tuple[Path, str]:
    """Folder ``nilearn/datasets/data`` of the installed nilearn, and nilearn's version."""
    try:
        import nilearn
    except ImportError:
        sys.exit("derive_template.py needs nilearn: pip install nilearn")
    folder = Path(nilearn.__file__).resolve().parent / "datasets" / "data"
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        found = sorted(p.name for p in folder.glob("mni_icbm152_*"))
        sys.exit(f"nilearn {nilearn.__version__} lacks {missing} in {folder}; found {found}")
    return folder, nilearn.__version__


def load_unit(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Load a uint8 template image as float64 in [0, 1] with its affine (checked: 1 mm RAS)."""
    img = nib.load(path)
    data = np.asanyarray(img.dataobj).astype(np.float64)
    if data.ndim != 3:
        sys.exit(f"{path.name}: expected a 3D image, got shape {data.shape}")
    if not np.allclose(img.affine[:3, :3], np.eye(3)):
        sys.exit(f"{path.name}: expected a 1 mm RAS affine, got\n{img.affine}")
    return data / data.max(), img.affine


def downsample(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Gaussian-smooth a 1 mm map and take its values on the 2 mm MNI grid points."""
    smooth = ndi.gaussian_filter(data, SMOOTH_SIGMA_MM, mode="constant")
    start = [round(float(o - affine[i, 3])) for i, o in enumerate(OUT_ORIGIN)]
    stop = [s + 2 * (n - 1) + 1 for s, n in zip(start, OUT_SHAPE, strict=True)]
    if min(start) < 0 or any(e > n for e, n in zip(stop, data.shape, strict=True)):
        sys.exit(f"the 2 mm box {OUT_ORIGIN} + {OUT_SHAPE} does not fit in the source grid")
    return smooth[start[0] : stop[0] : 2, start[1] : stop[1] : 2, start[2] : stop[2] : 2]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Quantise values in [0, 1] to 0..255."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def derive(out_dir: Path) -> Path:
    """Build the npz and the notice in ``out_dir``; returns the npz path."""
    folder, version = find_nilearn_data()
    maps = {}
    affine = None
    for key, name in FILES.items():
        maps[key], aff = load_unit(folder / name)
        if affine is not None and not np.allclose(aff, affine):
            sys.exit(f"{name}: affine differs from the T1 template's")
        affine = aff
    mask_1mm = ndi.binary_fill_holes(maps["t1"] > MASK_THRESHOLD)
    csf_1mm = np.clip(1.0 - maps["gm"] - maps["wm"], 0.0, 1.0) * mask_1mm

    out = {key: downsample(maps[key], affine) for key in ("t1", "gm", "wm")}
    out["csf"] = downsample(csf_1mm, affine)
    mask = ndi.binary_fill_holes(downsample(mask_1mm.astype(np.float64), affine) >= 0.5)
    for key in ("gm", "wm", "csf"):
        out[key] = out[key] * mask
    out_affine = np.diag([OUT_VOXEL, OUT_VOXEL, OUT_VOXEL, 1.0])
    out_affine[:3, 3] = OUT_ORIGIN

    out_dir.mkdir(parents=True, exist_ok=True)
    npz_path = out_dir / NPZ_NAME
    np.savez_compressed(
        npz_path,
        **{key: to_uint8(value) for key, value in out.items()},
        mask=mask.astype(np.uint8),
        affine=out_affine,
        source=np.array(
            f"nilearn {version}: {', '.join(FILES.values())}; derived by "
            "scripts/derive_template.py (2 mm, uint8 0..255 = 0..1)"
        ),
    )
    (out_dir / NOTICE_NAME).write_text(NOTICE, encoding="utf-8")
    return npz_path


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    path = derive(args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {NOTICE_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
