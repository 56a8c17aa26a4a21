"""QSM reconstruction as a :class:`~.base.Task`.

Inputs a local field (ppm) and a brain mask, and the B0 direction; the network sees the
masked field over its own spread, rotated so that B0 is along z
(:func:`~.preprocessing.qsm_network_input`), and its output is scaled back to ppm and rotated
back (:func:`~.preprocessing.qsm_output`). Trained with the QSMnet loss (L1 + dipole model +
gradient), validated by NRMSE, compared with TKD and CFL2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_fanet.baselines import dipole_inversion
from napari_fanet.io.b0_direction import world_to_array_direction
from napari_fanet.metrics import nrmse, qsm_metrics
from napari_fanet.physics.dipole import dipole_kernel, padded_shape
from napari_fanet.tasks.b0_alignment import Z_AXIS, align_to_b0, fold_b0_sign
from napari_fanet.tasks.base import Infer, Method, Task
from napari_fanet.tasks.cases import EvalCase
from napari_fanet.tasks.losses import qsm_loss
from napari_fanet.tasks.preprocessing import (
    QSMNetworkInput,
    qsm_network_input,
    qsm_output,
    qsm_target,
)
from napari_fanet.tasks.roles import ROLES
from napari_fanet.tasks.sampling import rotate_in_plane, sample_qsm_patch
from napari_fanet.tasks.subjects import QSMSubject, load_qsm_subject

LOSS_PAD_FACTOR = 1.5
#: Parameter grids the classical baselines are tuned over.
TKD_THRESHOLDS = (0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.3)
CFL2_LAMBDAS = tuple(float(v) for v in np.logspace(-3.5, -0.5, 13))


def qsm_scales(subjects: Sequence[QSMSubject]) -> dict[str, Any]:
    """Input and output scaling: standard deviations of field and chi inside the masks."""
    field = np.concatenate([s.field[s.mask] for s in subjects])
    chi = np.concatenate([s.chi[s.mask] for s in subjects if s.chi is not None])
    return {"field_scale": float(field.std()), "chi_scale": float(chi.std()), "align_b0": True}


def _case_b0(case: EvalCase) -> np.ndarray:
    """The case's B0 direction in the array axes of its local field."""
    return world_to_array_direction(case.b0_world, case.inputs["local_field"].affine)


def simulated_qsm_case(name: str, subject) -> EvalCase:
    """An evaluation case of a simulated QSM subject (``simulation.qsm_phantom``).

    Inputs: its local field and brain mask as Volumes on the subject's affine; reference: its
    susceptibility (ppm) inside its mask; B0 in world axes.
    """
    from napari_fanet.io.nifti import Volume

    vol = lambda a: Volume(np.asarray(a, dtype=np.float32), subject.affine)  # noqa: E731
    return EvalCase(
        name,
        {"local_field": vol(subject.local_field), "brain_mask": vol(subject.mask)},
        subject.chi,
        subject.mask.astype(bool),
        subject.voxel_size,
        tuple(subject.b0_dir_world),
    )


class QSMTask(Task):
    """QSM: local field (ppm), brain mask and B0 direction -> susceptibility (ppm)."""

    name = "qsm"
    simulation_name = "qsm"
    title = "QSM reconstruction"
    roles = ROLES["qsm"]
    grid_role = "local field"
    default_model = "fanet-qsm"
    primary_metric = ("nrmse", False)
    evaluation_metrics = ("nrmse", "nrmse_demeaned", "hfen", "ssim", "xsim", "psnr", "seconds")
    paired_metrics = ("nrmse", "hfen", "ssim")
    prediction_options = ("b0_dir", "data_consistency", "dc_lambda")
    #: The raw network (no data consistency) beside the default pipeline.
    ablations: dict[str, dict[str, Any]] = {  # noqa: RUF012 (read-only class attribute)
        " (raw)": {"data_consistency": "none"}
    }
    output = "chi"
    phase_input = True
    #: ``fanet-qsm`` fine-tuned on the ``chain`` family (simulated phase through the phase
    #: chain), with folded attention at 1/4 resolution too; the local-field path keeps
    #: ``default_model``.
    default_phase_model = "fanet-qsm-phase"

    # ------------------------------------------------------------------ inputs
    def check_inputs(self, arrays: Mapping[str, Any], checkpoint: dict) -> None:
        """A brain mask with a voxel inside, and a checkpoint with the preprocessing scales."""
        if not (np.asarray(arrays["brain mask"]) > 0.5).any():
            raise ValueError("brain mask is empty: expected a mask with at least one voxel inside")
        if not (checkpoint.get("extra", {}) or {}).get("preprocessing"):
            raise ValueError(
                "checkpoint lacks the QSM preprocessing scales (extra['preprocessing'])"
            )

    @staticmethod
    def scales(checkpoint: dict) -> dict:
        """The checkpoint's preprocessing scales (``field_scale``, ``chi_scale``, ``align_b0``)."""
        return checkpoint.get("extra", {}).get("preprocessing")

    # ------------------------------------------------------------------ pre/postprocessing
    def preprocess(
        self,
        field: np.ndarray,
        mask: np.ndarray,
        scales: dict,
        b0_dir: Sequence[float],
        voxel_size: Sequence[float],
    ) -> QSMNetworkInput:
        """See :func:`~.preprocessing.qsm_network_input`."""
        return qsm_network_input(field, mask, scales, b0_dir, voxel_size)

    def postprocess(
        self,
        output: torch.Tensor,
        net: QSMNetworkInput,
        mask: np.ndarray,
        scales: dict,
        voxel_size: Sequence[float],
    ) -> np.ndarray:
        """Susceptibility ``(X, Y, Z)`` in ppm from the ``(1, 1, X, Y, Z)`` network output."""
        return qsm_output(output[0, 0].numpy(), net, mask, scales, voxel_size)

    # ------------------------------------------------------------------ subjects
    def load_subject(self, folder: str | Path) -> QSMSubject:
        """See :func:`~.subjects.load_qsm_subject`."""
        return load_qsm_subject(folder)

    def owns_subject(self, subject: Any) -> bool:
        """QSM subjects carry no network ``image`` (their field is preprocessed later)."""
        return not hasattr(subject, "image")

    def simulated_subject(
        self, seed: int, voxel_size: Sequence[float], family: str = "phantom"
    ) -> QSMSubject:
        """See :func:`~.simulated.simulated_qsm_subject`."""
        from napari_fanet.tasks.simulated import simulated_qsm_subject

        return simulated_qsm_subject(seed, voxel_size, family=family)

    def network_subject(self, subject: QSMSubject, scales: dict) -> QSMSubject:
        """The subject as the network sees it: field and chi preprocessed, B0 along z if rotated.

        The field is :func:`~.preprocessing.qsm_network_input` (what prediction feeds the
        network), the reference :func:`~.preprocessing.qsm_target` in the same frame and units.
        """
        net = self.preprocess(
            subject.field, subject.mask, scales, subject.b0_dir, subject.voxel_size
        )
        chi = (
            None
            if subject.chi is None
            else qsm_target(subject.chi, net, scales, subject.voxel_size)
        )
        b0 = subject.b0_dir if net.rotation is None else Z_AXIS.copy()
        return QSMSubject(subject.name, net.image, chi, net.mask, subject.voxel_size, b0)

    def aligned_subject(self, subject: QSMSubject, scales: dict) -> QSMSubject:
        """The subject in ppm, rotated so that B0 is along z when the model aligns B0."""
        if not scales.get("align_b0") or np.allclose(fold_b0_sign(subject.b0_dir), Z_AXIS):
            return subject
        field, mask, chi, _ = align_to_b0(
            subject.field, subject.mask, subject.b0_dir, subject.voxel_size, subject.chi
        )
        return QSMSubject(subject.name, field, chi, mask, subject.voxel_size, Z_AXIS.copy())

    # ------------------------------------------------------------------ training
    def prepare_training(
        self, train: Sequence[Any], val: Sequence[Any], extra: dict, config: Any
    ) -> tuple[list[Any], list[Any]]:
        """Training subjects as network inputs and targets, validation subjects B0-aligned.

        A new run records :func:`qsm_scales` of the training subjects in
        ``extra["preprocessing"]``; a run from a checkpoint keeps the checkpoint's.
        """
        scales = extra.setdefault("preprocessing", qsm_scales(train))
        return (
            [self.network_subject(s, scales) for s in train],
            [self.aligned_subject(s, scales) for s in val],
        )

    def batch(
        self, subjects: Sequence[Any], rng: np.random.Generator, config: Any, extra: dict
    ) -> dict[str, torch.Tensor]:
        """A batch of ``(B, 1, *P)`` field, chi and mask patches and each patch's dipole kernel.

        ``subjects`` are :meth:`network_subject` s: their patches are what the network sees at
        run time, in the network's units.
        """
        fields, chis, masks, kernels = [], [], [], []
        pshape = padded_shape(config.patch_size, LOSS_PAD_FACTOR)
        for _ in range(config.batch_size):
            s = subjects[rng.integers(len(subjects))]
            field, chi, mask = sample_qsm_patch(s, rng, config.patch_size)
            b0 = s.b0_dir
            if config.augment and rng.random() < 0.5:
                (field, chi, mask), b0 = rotate_in_plane(
                    [field, chi, mask], b0, rng.uniform(-15, 15)
                )
                mask = (mask > 0.5).astype(np.float32)
            fields.append(field)
            chis.append(chi)
            masks.append(mask)
            kernels.append(dipole_kernel(pshape, s.voxel_size, b0, dtype=torch.float32))

        def as_batch(xs: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(xs).astype(np.float32))[:, None]

        return {
            "field": as_batch(fields),
            "chi": as_batch(chis),
            "mask": as_batch(masks),
            "dipole": torch.stack(kernels)[:, None],
        }

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """QSMnet loss of the model on a batch (scaled units)."""
        return qsm_loss(model(batch["field"]), batch["chi"], batch["mask"], batch["dipole"])

    def predict_map(self, infer: Infer, subject: QSMSubject, scales: dict) -> np.ndarray:
        """Susceptibility (ppm) of a subject: preprocess, ``infer``, postprocess."""
        vox = subject.voxel_size
        net = self.preprocess(subject.field, subject.mask, scales, subject.b0_dir, vox)
        return self.postprocess(infer(net.image[None]), net, subject.mask, scales, vox)

    def validate(
        self, subjects: Sequence[Any], infer: Infer, extra: dict, config: Any
    ) -> dict[str, float]:
        """Mean validation loss (susceptibility L1 inside the mask, ppm) and NRMSE (%)."""
        scales = extra["preprocessing"]
        rows = []
        for s in subjects:
            chi = self.predict_map(infer, s, scales)
            l1 = float(np.abs(chi - s.chi)[s.mask].mean())
            rows.append({"val_loss": l1 / scales["chi_scale"], "nrmse": nrmse(chi, s.chi, s.mask)})
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    # ------------------------------------------------------------------ evaluation
    def simulated_case(self, seed: int, voxel_size: Sequence[float]) -> EvalCase:
        """A simulated QSM subject: local field and brain mask; chi as reference."""
        from napari_fanet.simulation.dataset import simulate_subject

        s = simulate_subject(self.simulation_name, int(seed), tuple(voxel_size))
        return simulated_qsm_case(f"seed-{seed}", s)

    def tune_baselines(self, cases: Sequence[EvalCase]) -> dict[str, float]:
        """TKD threshold and CFL2 lambda with the lowest mean NRMSE on ``cases``."""
        params = {}
        for method, grid in (("tkd", TKD_THRESHOLDS), ("cfl2", CFL2_LAMBDAS)):
            scores: dict[float, list[float]] = {v: [] for v in grid}
            for c in cases:
                _, s = dipole_inversion.tune_parameter(
                    method,
                    c.inputs["local_field"].data,
                    c.reference,
                    c.mask,
                    c.voxel_size,
                    _case_b0(c),
                    grid,
                )
                for v in grid:
                    scores[v].append(s[v])
            params[method] = float(min(grid, key=lambda v: np.mean(scores[v])))
        return params

    def baselines(self, params: dict[str, float]) -> dict[str, Method]:
        """TKD at ``params["tkd"]`` and CFL2 at ``params["cfl2"]``."""

        def tkd(c: EvalCase) -> np.ndarray:
            return dipole_inversion.tkd(
                c.inputs["local_field"].data,
                c.voxel_size,
                _case_b0(c),
                threshold=params["tkd"],
                mask=c.mask,
            )

        def cfl2(c: EvalCase) -> np.ndarray:
            return dipole_inversion.cfl2(
                c.inputs["local_field"].data,
                c.voxel_size,
                _case_b0(c),
                lam=params["cfl2"],
                mask=c.mask,
            )

        return {"TKD": tkd, "CFL2": cfl2}

    def score(self, prediction: np.ndarray, case: EvalCase) -> dict[str, float]:
        """NRMSE, HFEN, SSIM, XSIM, PSNR... inside the case's mask."""
        return qsm_metrics(prediction, case.reference, case.mask)

    def case_options(self, case: EvalCase) -> dict[str, Any]:
        """The case's B0 direction (scanner axes, as its Volumes' affine gives them)."""
        return {"b0_dir": case.b0_world}

    def compare(
        self, outputs: Mapping[str, np.ndarray], reference: np.ndarray, mask: np.ndarray | None
    ) -> Any:
        """The predicted susceptibility against a reference map inside ``mask``."""
        from napari_fanet.tasks.comparison import compare_susceptibility

        return compare_susceptibility(outputs[self.output], reference, mask)
