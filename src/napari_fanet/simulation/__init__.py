"""Offline, seeded simulation of MS and QSM training data from the MNI152 2009 template.

Every subject is a deterministic function of one integer seed: the same seed (and voxel size)
gives identical arrays. A subject is the shipped 2 mm MNI152 2009 template
(:mod:`.template`, derived from the files nilearn ships; nothing is downloaded) deformed by a
random affine and a smooth random displacement (:mod:`.deform`), then

- QSM (:mod:`.qsm_phantom`): susceptibility in ppm from tissue values, deep grey nuclei, veins
  and texture; the local field ``forward_field(chi)`` (ppm of B0) for a tilted B0 plus noise; a
  GRE magnitude; the brain mask.
- MS (:mod:`.ms_phantom`): T1, T2 and FLAIR from partial-volume tissue mixing, with white-matter
  lesions, normal periventricular FLAIR caps, bias field and Rician noise; the lesion, brain and
  white-matter masks.
- MS, ``randomised`` family (:mod:`.ms_randomised`, ``family="randomised"``): the same files
  with domain-randomised contrast, lesion loads from 0.1 to 80 mL (:mod:`.ms_lesion_load`) and
  scanner effects (:mod:`.scanner_artefacts`), typically at 1 mm; ``meta.json`` records every
  drawn setting and ``dataset.json`` the family.

Seed convention (:data:`.dataset.SPLIT_SEEDS`): subject ``i`` of a dataset simulated with seed
``S`` uses seed ``S + i``; training sets start at 0, validation at 10 000, test at 20 000 and
the shipped sample data at 90 000, so splits never share a subject (deformation, tissue values,
lesions, noise and B0 direction all differ).

Folder layout written by :func:`.dataset.simulate_dataset` (``napari-fanet simulate``)::

    OUT/
      dataset.json          format, format_version, napari_fanet_version, task, seed,
                            subject_seed_rule, n_subjects, subjects, voxel_size, shape, affine,
                            orientation, noise, files (dtype and description of each),
                            template; QSM also field_units ("ppm of B0") and chi_units ("ppm")
      sub-0000/
        meta.json           subject, seed, task, voxel_size, shape, noise, files and the drawn
                            parameters (QSM: b0_dir in array axes, b0_dir_world in world axes,
                            b0_tilt_deg, field_noise_std_ppm, tissue and nucleus chi, n_veins;
                            MS: noise_sigma_rel_wm, bias_std, tissue intensities, rim
                            parameters, n_lesions, lesion_voxels, one entry per lesion)
        QSM:  local_field.nii.gz (float32, ppm of B0), chi.nii.gz (float32, ppm, the reference),
              magnitude.nii.gz (float32), brain_mask.nii.gz (uint8)
        MS:   t1.nii.gz, t2.nii.gz, flair.nii.gz (int16, WM near 1000, skull-stripped),
              lesion_mask.nii.gz, brain_mask.nii.gz, wm_mask.nii.gz (uint8 0/1),
              wm_prob.nii.gz (float32 in [0, 1])
      sub-0001/ ...

All volumes of a dataset share one grid: the MNI box x in [-90, 90], y in [-126, 90],
z in [-72, 108] mm at the chosen voxel size (2 mm: 91 x 109 x 91) with a diagonal RAS affine,
so array axes and world axes coincide. ``dataset.json`` is written last: a folder without it is
an interrupted run.

Template: MNI ICBM152 2009a nonlinear symmetric, Copyright (C) 1993-2009 Louis Collins,
McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University (full notice:
``data/NOTICE-mni152-2009.txt``, :func:`.template.template_notice`).
"""

from __future__ import annotations

from napari_fanet.simulation.dataset import (
    SPLIT_SEEDS,
    TASKS,
    SubjectWritten,
    iter_simulate_dataset,
    simulate_dataset,
    simulate_subject,
    split_seed,
    write_subject,
)
from napari_fanet.simulation.ms_phantom import MSParams, MSSubject, simulate_ms_subject
from napari_fanet.simulation.qsm_phantom import QSMParams, QSMSubject, simulate_qsm_subject
from napari_fanet.simulation.template import load_template, mni_grid, template_notice

__all__ = [
    "SPLIT_SEEDS",
    "TASKS",
    "MSParams",
    "MSSubject",
    "QSMParams",
    "QSMSubject",
    "SubjectWritten",
    "iter_simulate_dataset",
    "load_template",
    "mni_grid",
    "simulate_dataset",
    "simulate_ms_subject",
    "simulate_qsm_subject",
    "simulate_subject",
    "split_seed",
    "template_notice",
    "write_subject",
]
