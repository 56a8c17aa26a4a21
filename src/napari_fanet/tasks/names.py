"""The task names: one spelling per task, and the aliases the commands accept.

Checkpoints store ``config.task`` as ``"segmentation"`` or ``"qsm"``; the ``simulate`` and
``evaluate`` commands (and the simulator) call segmentation ``"ms"``. :func:`canonical_name`
turns either spelling into the stored one. The module itself needs nothing but the standard
library (the lower modules of the package, such as :mod:`.subjects`, use it).
"""

from __future__ import annotations

#: The tasks, by the name checkpoints store.
TASK_NAMES = ("segmentation", "qsm")
#: Other accepted names, mapped to the stored one.
ALIASES = {"ms": "segmentation"}


def canonical_name(name: str) -> str:
    """The stored name of task ``name`` (``"ms"`` -> ``"segmentation"``).

    Parameters
    ----------
    name : str
        ``"segmentation"``, ``"qsm"`` or an alias in :data:`ALIASES`.

    Returns
    -------
    str
        One of :data:`TASK_NAMES`.

    Raises
    ------
    ValueError
        For any other name; the message lists the valid names.
    """
    if isinstance(name, str):
        name = ALIASES.get(name, name)
        if name in TASK_NAMES:
            return name
    aliases = ", ".join(f"{a!r} for {t}" for a, t in ALIASES.items())
    raise ValueError(f"task must be one of {list(TASK_NAMES)} (or {aliases}), got {name!r}")
