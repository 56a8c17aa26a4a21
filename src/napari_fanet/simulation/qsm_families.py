"""QSM phantom families for out-of-distribution tests: what the training recipe never draws.

Each family is a :class:`~napari_fanet.simulation.qsm_phantom.QSMParams` and a voxel size. The
training recipe draws anatomical phantoms at 2 mm with B0 within 25 degrees of z, field noise
0.5-2 ppb and no extra sources; every family below leaves that distribution in one direction:

==================  ===================================================================
family              what differs from training
==================  ===================================================================
geometric           no anatomy: 8-16 spheres, ellipsoids and cylinders of +-0.05-0.4 ppm
haemorrhage         one irregular 0.5-1.0 ppm haemorrhage, radius 6-14 mm
calcification       1-3 calcifications of -0.5 to -0.1 ppm, radius 1.5-4 mm
voxel-1.5mm         1.5 mm isotropic voxels
voxel-1x1x2mm       1 x 1 x 2 mm voxels (anisotropic)
tilt-15-30          B0 tilted 15-30 degrees from z
noise-0.5ppb        field noise 0.5 ppb at the median magnitude
noise-1ppb          field noise 1 ppb
noise-3ppb          field noise 3 ppb (above the training range)
==================  ===================================================================

Seeds: test subject ``i`` of family number ``f`` (its position in :data:`FAMILIES`) has seed
``50_000 + 1000 f + i``, its validation draws (to tune the classical baselines)
``50_500 + 1000 f + i``: disjoint from the training, validation, test and sample splits.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_fanet.simulation.qsm_phantom import QSMParams
from napari_fanet.simulation.qsm_sources import SourceParams

OOD_SEED_BASE = 50_000
VALIDATION_OFFSET = 500

#: The training family of the retrained QSM networks (``--family fullrange``): the anatomical
#: phantom plus 0-8 random geometric sources (spheres, ellipsoids, cylinders of random
#: orientation and size, radius 1.5-12 mm) of random sign and magnitude 0.05-1.0 ppm, which
#: covers haemorrhage (up to 1 ppm) and calcification (down to -0.5 ppm) values; larger veins
#: (radius up to 2.5 mm); B0 tilts up to 30 degrees. It never draws the irregular haemorrhage
#: blobs, the calcification blobs or the anatomy-free phantoms of the OOD families below.
FULL_RANGE = QSMParams(
    vein_radius_mm=(0.6, 2.5),
    max_tilt_deg=30.0,
    sources=SourceParams(
        n_geometric=(0, 8), geometric_chi=(0.05, 1.0), geometric_radius_mm=(1.5, 12.0)
    ),
)


@dataclass(frozen=True)
class QSMFamily:
    """One phantom family: its name, parameters, voxel size (mm) and a one-line description."""

    name: str
    params: QSMParams
    voxel_size: tuple[float, float, float]
    description: str

    def seed(self, index: int, *, validation: bool = False) -> int:
        """Seed of test (or validation) subject ``index`` of this family."""
        if not 0 <= index < VALIDATION_OFFSET:
            raise ValueError(f"index must be in [0, {VALIDATION_OFFSET}), got {index}")
        number = [f.name for f in FAMILIES].index(self.name)
        return OOD_SEED_BASE + 1000 * number + (VALIDATION_OFFSET if validation else 0) + index


ISO2 = (2.0, 2.0, 2.0)
FAMILIES: tuple[QSMFamily, ...] = (
    QSMFamily(
        "geometric",
        QSMParams(
            anatomy_contrast=False,
            sources=SourceParams(n_geometric=(8, 16), geometric_chi=(0.05, 0.4)),
        ),
        ISO2,
        "no anatomy; 8-16 spheres, ellipsoids and cylinders of +-0.05-0.4 ppm",
    ),
    QSMFamily(
        "haemorrhage",
        QSMParams(sources=SourceParams(p_haemorrhage=1.0)),
        ISO2,
        "anatomy plus one 0.5-1.0 ppm haemorrhage (radius 6-14 mm)",
    ),
    QSMFamily(
        "calcification",
        QSMParams(sources=SourceParams(n_calcifications=(1, 3))),
        ISO2,
        "anatomy plus 1-3 calcifications of -0.5 to -0.1 ppm",
    ),
    QSMFamily("voxel-1.5mm", QSMParams(), (1.5, 1.5, 1.5), "1.5 mm isotropic voxels"),
    QSMFamily("voxel-1x1x2mm", QSMParams(), (1.0, 1.0, 2.0), "1 x 1 x 2 mm voxels"),
    QSMFamily(
        "tilt-15-30",
        QSMParams(min_tilt_deg=15.0, max_tilt_deg=30.0),
        ISO2,
        "B0 tilted 15-30 degrees from z",
    ),
    QSMFamily(
        "noise-0.5ppb", QSMParams(field_noise_std=(0.0005, 0.0005)), ISO2, "0.5 ppb field noise"
    ),
    QSMFamily("noise-1ppb", QSMParams(field_noise_std=(0.001, 0.001)), ISO2, "1 ppb field noise"),
    QSMFamily("noise-3ppb", QSMParams(field_noise_std=(0.003, 0.003)), ISO2, "3 ppb field noise"),
)


def family(name: str) -> QSMFamily:
    """The family called ``name`` (see :data:`FAMILIES`)."""
    for f in FAMILIES:
        if f.name == name:
            return f
    names = ", ".join(f.name for f in FAMILIES)
    raise ValueError(f"unknown QSM phantom family {name!r}; expected one of {names}")
