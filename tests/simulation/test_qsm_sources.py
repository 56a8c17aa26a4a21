"""Extra QSM sources and the out-of-distribution phantom families."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.simulation.qsm_families import FAMILIES, FULL_RANGE, family
from napari_fanet.simulation.qsm_phantom import QSMParams, simulate_qsm_subject
from napari_fanet.simulation.qsm_sources import SourceParams

VOX = 4.0  # coarse grids keep these tests fast


def test_default_sources_leave_the_phantom_unchanged():
    plain = simulate_qsm_subject(7, VOX)
    explicit = simulate_qsm_subject(7, VOX, params=QSMParams(sources=SourceParams()))
    np.testing.assert_array_equal(plain.chi, explicit.chi)
    np.testing.assert_array_equal(plain.local_field, explicit.local_field)
    assert plain.meta["sources"] == {"geometric": [], "haemorrhage": [], "calcification": []}


@pytest.mark.parametrize(
    ("name", "kind", "check"),
    [
        ("haemorrhage", "haemorrhage", lambda chi: chi.max() > 0.4),
        ("calcification", "calcification", lambda chi: chi.min() < -0.05),
        ("geometric", "geometric", lambda chi: np.abs(chi).max() > 0.04),
    ],
)
def test_families_draw_their_sources(name, kind, check):
    fam = family(name)
    s = simulate_qsm_subject(fam.seed(0), VOX, params=fam.params)
    assert len(s.meta["sources"][kind]) >= 1
    assert check(s.chi)
    if name == "geometric":  # no anatomy: zero wherever no shape lies
        assert s.meta["anatomy_contrast"] is False and s.meta["n_veins"] == 0
        assert np.mean(s.chi[s.mask] == 0) > 0.5


def test_tilt_family_stays_in_its_zone_and_seeds_are_disjoint():
    fam = family("tilt-15-30")
    for i in range(3):
        tilt = simulate_qsm_subject(fam.seed(i), VOX, params=fam.params).meta["b0_tilt_deg"]
        assert 15.0 <= tilt <= 30.0
    seeds = {f.seed(i, validation=v) for f in FAMILIES for i in range(5) for v in (False, True)}
    assert len(seeds) == len(FAMILIES) * 10 and min(seeds) >= 50_000


def test_full_range_family_reaches_haemorrhage_and_calcification_values():
    values = np.concatenate(
        [simulate_qsm_subject(seed, VOX, params=FULL_RANGE).chi.ravel() for seed in range(4)]
    )
    assert values.max() > 0.5 and values.min() < -0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"n_geometric": (3, 1)},
            r"n_geometric must be \(lo, hi\) with 0 <= lo <= hi, got \(3, 1\)",
        ),
        ({"p_haemorrhage": 1.5}, r"p_haemorrhage must be in \[0, 1\], got 1.5"),
        ({"calcification_radius_mm": (0.0, 2.0)}, r"calcification_radius_mm must be \(lo, hi\)"),
    ],
)
def test_bad_source_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SourceParams(**kwargs)


def test_bad_family_and_tilt():
    with pytest.raises(ValueError, match="unknown QSM phantom family 'mri'; expected one of"):
        family("mri")
    with pytest.raises(ValueError, match=r"index must be in \[0, 500\), got 500"):
        family("geometric").seed(500)
    with pytest.raises(ValueError, match=r"min_tilt_deg must be in \[0, max_tilt_deg=10"):
        QSMParams(max_tilt_deg=10.0, min_tilt_deg=20.0)
