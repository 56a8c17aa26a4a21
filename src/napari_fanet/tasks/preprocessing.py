"""What the networks see: the one definition of each task's preprocessing.

Training (subject folders and simulated subjects), validation and prediction (layers and
files) all call these functions, so a volume reaches the network the same way on every path
(``tests/tasks/test_network_input_parity.py`` checks it bit for bit).

- Segmentation: the brain is the brain mask (or the non-zero FLAIR voxels), each of T1, T2
  and FLAIR is z-scored inside the brain, 0 outside; a missing modality is an all-zero
  channel (what modality dropout trains a model on).
- QSM: the field inside the brain mask divided by the volume's own spread
  (:func:`volume_field_scale`), rotated so that B0 is along the array's z axis when the model
  was trained so (:func:`qsm_network_input`); :func:`qsm_output` maps the network's output back
  to ppm on the input grid, :func:`qsm_target` brings a reference map into the network's frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_fanet.tasks.b0_alignment import Z_AXIS, align_to_b0, fold_b0_sign, rotate_volume
from napari_fanet.tasks.roles import SEG_CHANNELS

# ----------------------------------------------------------------------------- segmentation
#: A FLAIR given without a brain mask holds the residue of resampling when more than
#: :data:`NEAR_ZERO_FRACTION` of its non-zero voxels are below :data:`NEAR_ZERO_RELATIVE` times
#: the 99th percentile of ``|FLAIR|`` (about two thirds of them in a shared patient resampled to
#: 0.8 mm with cubic splines after skull stripping; 0.05-0.15 % in the shared patients as given,
#: 0.02-0.08 % in their 1 x 1 x 3 mm copies, 5.1-5.7 % in their 2D 5 mm copies, whose averaged
#: slices leave a soft brain edge; at most 2e-5 in the 1 mm simulations).
NEAR_ZERO_RELATIVE = 1e-3
NEAR_ZERO_FRACTION = 0.2


def near_zero_residue(flair: np.ndarray) -> tuple[float, float] | None:
    """``(floor, fraction)`` when a FLAIR's background holds near-zero resampling residue.

    Parameters
    ----------
    flair : np.ndarray
        ``(X, Y, Z)`` FLAIR intensities.

    Returns
    -------
    tuple of float or None
        The intensity ``floor`` (:data:`NEAR_ZERO_RELATIVE` of the 99th percentile of
        ``|FLAIR|`` over its non-zero voxels) and the fraction of non-zero voxels below it, when
        that fraction exceeds :data:`NEAR_ZERO_FRACTION`; None otherwise (also for all zeros).
    """
    flair = np.asarray(flair)
    magnitudes = np.abs(flair[flair != 0])
    if magnitudes.size == 0:
        return None
    floor = NEAR_ZERO_RELATIVE * float(np.percentile(magnitudes, 99))
    fraction = float(np.mean(magnitudes < floor))
    return (floor, fraction) if fraction > NEAR_ZERO_FRACTION else None


def seg_brain_mask(flair: np.ndarray, brain_mask: np.ndarray | None = None) -> np.ndarray:
    """The ``(X, Y, Z)`` bool brain: ``brain_mask > 0.5``, else the non-zero FLAIR voxels.

    Without a brain mask the input is taken as skull-stripped: the brain is what is not zero,
    or, when the background holds the near-zero residue that resampling after skull stripping
    leaves (:func:`near_zero_residue`), what is above that residue's floor in magnitude.
    Either way, cavities the brain encloses in 3D are filled: zero-valued voxels inside a
    skull-stripped FLAIR (dark CSF stored as integers, a mask that leaves out the ventricles)
    would otherwise be normalised as background and put periventricular lesions at the brain's
    edge, where the brain-edge rule drops them. A patient's FLAIR stored as int16 lost 0.04 Dice
    that way (``benchmarks/segment_input_variants.py``, patient 19); the shared patients' FLAIRs
    have no such cavity.
    """
    if brain_mask is not None:
        brain = np.asarray(brain_mask) > 0.5
    else:
        flair = np.asarray(flair)
        residue = near_zero_residue(flair)
        brain = flair != 0 if residue is None else np.abs(flair) > residue[0]
    return ndimage.binary_fill_holes(brain)


def zscore_in_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` with statistics inside ``mask``; 0 outside the mask.

    Parameters
    ----------
    image : np.ndarray
        ``(X, Y, Z)`` intensities.
    mask : np.ndarray
        ``(X, Y, Z)`` bool.

    Returns
    -------
    np.ndarray
        ``(X, Y, Z)`` float32.
    """
    values = image[mask]
    if values.size == 0:
        raise ValueError("cannot normalise: the brain mask is empty")
    std = float(values.std()) or 1.0
    return np.where(mask, (image - values.mean()) / std, 0.0).astype(np.float32)


def seg_network_image(images: Mapping[str, np.ndarray], brain: np.ndarray) -> np.ndarray:
    """The ``(3, X, Y, Z)`` float32 network input: T1, T2, FLAIR z-scored inside ``brain``.

    Parameters
    ----------
    images : mapping
        ``(X, Y, Z)`` arrays by role name (:data:`~.roles.SEG_CHANNELS`: ``"T1"``, ``"T2"``,
        ``"FLAIR"``); a role that is absent becomes an all-zero channel. Other keys are ignored.
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask (:func:`seg_brain_mask`).
    """
    return np.stack(
        [
            zscore_in_mask(images[k], brain) if k in images else np.zeros(brain.shape, "f4")
            for k in SEG_CHANNELS
        ]
    )


# ----------------------------------------------------------------------------- QSM
@dataclass
class QSMNetworkInput:
    """A QSM volume as the network sees it, and what maps the output back.

    Attributes
    ----------
    image : np.ndarray
        ``(X, Y, Z)`` float32: the masked field over :attr:`scale`, in the network's frame.
    mask : np.ndarray
        ``(X, Y, Z)`` bool brain mask in the network's frame.
    scale : float
        The field's divisor (ppm), :func:`volume_field_scale` of the input.
    rotation : np.ndarray or None
        ``(3, 3)`` rotation into the B0-aligned frame; None when none was needed.
    """

    image: np.ndarray
    mask: np.ndarray
    scale: float
    rotation: np.ndarray | None = None


def volume_field_scale(field: np.ndarray, mask: np.ndarray, scales: dict) -> float:
    """The divisor that brings this volume's field into the network's training range.

    The standard deviation of the field inside ``mask`` (ppm), so that every volume reaches the
    network at the spread it was trained on, whatever its scale: a field ``k`` times stronger
    gives the same network input, and the map is multiplied back by ``k``. This makes the
    network path exactly linear in the field for ``k > 0`` (the physics: ``chi`` is linear in
    the field), where training-time scaling augmentation only makes it approximately so.
    Falls back to the training scale ``scales["field_scale"]`` for an all-zero field.
    """
    values = field[mask]
    spread = float(values.std()) if values.size else 0.0
    return spread if np.isfinite(spread) and spread > 0 else float(scales["field_scale"])


def output_gain(scale: float, scales: dict) -> float:
    """Factor from network output to susceptibility (ppm) for a field divided by ``scale``."""
    return scales["chi_scale"] * scale / scales["field_scale"]


def qsm_network_input(
    field: np.ndarray,
    mask: np.ndarray,
    scales: dict,
    b0_dir: Sequence[float],
    voxel_size: Sequence[float],
) -> QSMNetworkInput:
    """What a QSM network sees: the masked field over its scale, B0-aligned if trained so.

    The field is divided by :func:`volume_field_scale` (computed on the input grid). When the
    model was trained on B0-aligned data (``scales["align_b0"]``) and ``b0_dir`` (array axes)
    is not the array's z axis up to sign, field and mask are rotated so that it is
    (:func:`~.b0_alignment.align_to_b0`; the sign is folded, ``b0`` and ``-b0`` give the same
    input).

    Parameters
    ----------
    field, mask : np.ndarray
        ``(X, Y, Z)`` local field (ppm) and bool brain mask.
    scales : dict
        The model's preprocessing scales (``field_scale``, ``chi_scale``, ``align_b0``).
    b0_dir : sequence of 3 float
        Main-field direction in array axes.
    voxel_size : sequence of 3 float
        Voxel size (mm).
    """
    rotation = None
    scale = volume_field_scale(field, mask, scales)
    if scales.get("align_b0") and not np.allclose(fold_b0_sign(b0_dir), Z_AXIS):
        field, mask_in, _, rotation = align_to_b0(field, mask, b0_dir, voxel_size)
    else:
        mask_in = mask
    return QSMNetworkInput((field * mask_in / scale).astype(np.float32), mask_in, scale, rotation)


def qsm_target(
    chi: np.ndarray, net: QSMNetworkInput, scales: dict, voxel_size: Sequence[float]
) -> np.ndarray:
    """A reference susceptibility ``(X, Y, Z)`` (ppm) as the training target of ``net``.

    Rotated into the network's frame as the field was (masked there) and divided by the
    :func:`output_gain`, so that :func:`qsm_output` of the target gives ``chi`` back.
    """
    if net.rotation is not None:
        chi = rotate_volume(chi, net.rotation, voxel_size) * net.mask
    return chi / output_gain(net.scale, scales)


def qsm_output(
    output: np.ndarray,
    net: QSMNetworkInput,
    mask: np.ndarray,
    scales: dict,
    voxel_size: Sequence[float],
) -> np.ndarray:
    """The network's ``(X, Y, Z)`` output as susceptibility (ppm) on the input grid.

    Multiplied by the :func:`output_gain`, rotated back when the input was rotated, and 0
    outside ``mask`` (the input's brain mask).
    """
    out = output * output_gain(net.scale, scales)
    if net.rotation is not None:
        out = rotate_volume(out * net.mask, net.rotation.T, voxel_size)
    return (out * mask).astype(np.float32)
