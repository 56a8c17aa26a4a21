"""The input roles of each task: one vocabulary for files, layers and network channels.

A role has the name the viewer and the messages use (``"FLAIR"``, ``"brain mask"``), the file
stem a subject folder uses (``flair.nii.gz``, ``brain_mask.nii.gz``) and, for the images the
network sees, its input channel. Prediction (layers, files) and training (subject folders,
the simulator) both go through this table, so a role has one meaning everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputRole:
    """One input of a task.

    Attributes
    ----------
    name : str
        Name in the viewer, the request and the messages (``"FLAIR"``).
    file : str
        File stem in a subject folder (``"flair"`` for ``flair.nii.gz``).
    required : bool
        Whether every prediction needs it. Optional roles may be missing; T1 and T2 only
        for models trained with modality dropout (:attr:`dropout_optional`).
    channel : int or None
        Network input channel of an image role; None for masks and fields handled otherwise.
    dropout_optional : bool
        Segmentation T1/T2: optional for a model trained with modality dropout (all-zero
        channel), required otherwise.
    """

    name: str
    file: str
    required: bool = True
    channel: int | None = None
    dropout_optional: bool = False


T1 = InputRole("T1", "t1", channel=0, dropout_optional=True)
T2 = InputRole("T2", "t2", channel=1, dropout_optional=True)
FLAIR = InputRole("FLAIR", "flair", channel=2)
BRAIN_MASK_OPTIONAL = InputRole("brain mask", "brain_mask", required=False)
LOCAL_FIELD = InputRole("local field", "local_field", channel=0)
BRAIN_MASK = InputRole("brain mask", "brain_mask")

#: Input roles per task, in the order the viewer lists them.
ROLES: dict[str, tuple[InputRole, ...]] = {
    "segmentation": (T1, T2, FLAIR, BRAIN_MASK_OPTIONAL),
    "qsm": (LOCAL_FIELD, BRAIN_MASK),
}
#: QSM from multi-echo GRE phase: the inputs of the phase chain (brain mask optional).
PHASE_ROLES = ("phase", "magnitude", "brain mask")
#: Segmentation channels of the network, by role name and by file stem, in channel order.
SEG_CHANNELS = tuple(r.name for r in ROLES["segmentation"] if r.channel is not None)
SEG_MODALITIES = tuple(r.file for r in ROLES["segmentation"] if r.channel is not None)
#: Segmentation inputs that may be missing for a model trained with modality dropout.
OPTIONAL_SEG_CHANNELS = tuple(r.name for r in ROLES["segmentation"] if r.dropout_optional)
#: File stem whose presence makes a sub-folder a subject of the task.
SUBJECT_KEY = {"segmentation": FLAIR.file, "qsm": LOCAL_FIELD.file}
