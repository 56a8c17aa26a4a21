"""Run methods on one case and score them against a reference: the one path for every caller.

``napari-fanet evaluate`` (:func:`napari_fanet.evaluation.simulated.run_evaluation`, and the QSM
suite through it), ``napari-fanet demo`` (:mod:`napari_fanet.evaluation.demo`) and the FA-Net
widget's "Compare with a reference" (:func:`predict_and_compare`) all run their methods through
:func:`run_and_score`. A method is a named callable; its prediction is scored with the task's
own comparison (:meth:`napari_fanet.tasks.Task.compare`: error maps, metrics and a text table),
so a number means the same wherever it is printed. GUI-free; the tasks (and torch with them)
are imported when a method is scored, so importing this module stays light.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from napari_fanet.engine.predict import PredictionResult
    from napari_fanet.engine.prediction_request import PredictionRequest
    from napari_fanet.tasks import Task
    from napari_fanet.tasks.comparison import Comparison

__all__ = ["Method", "MethodResult", "predict_and_compare", "run_and_score"]


@dataclass(frozen=True)
class Method:
    """A named way to predict a case.

    Parameters
    ----------
    name : str
        Short name (a table's row key, a file stem).
    run : callable
        ``run(case)`` returns the prediction: the task's output array (a lesion mask, a
        susceptibility map), the outputs by name, or anything with an ``outputs`` mapping
        (a :class:`~napari_fanet.engine.predict.PredictionResult`).
    label : str, optional
        For people (default: ``name``).
    """

    name: str
    run: Callable[[Any], Any]
    label: str | None = None

    def __post_init__(self) -> None:
        if not callable(self.run):
            raise TypeError(f"method {self.name!r}: run must be callable, got {self.run!r}")

    @property
    def title(self) -> str:
        """``label``, else ``name``."""
        return self.label if self.label is not None else self.name


@dataclass
class MethodResult:
    """One method on one case: what it returned, its outputs, its comparison and its time.

    Attributes
    ----------
    method : Method
        The method that ran.
    returned : object
        What ``method.run(case)`` returned (a PredictionResult keeps its report here).
    outputs : dict of str to np.ndarray
        The prediction by output name (an array return is the task's :attr:`~.Task.output`).
    comparison : Comparison or None
        The task's comparison with the reference; None when no reference was given.
    seconds : float
        Time of ``method.run`` alone.
    score_seconds : float
        Time of the comparison.
    """

    method: Method
    returned: Any
    outputs: dict[str, np.ndarray]
    comparison: Comparison | None
    seconds: float
    score_seconds: float = 0.0

    @property
    def name(self) -> str:
        """The method's name."""
        return self.method.name

    @property
    def metrics(self) -> dict[str, Any]:
        """The comparison's metrics (empty without a reference)."""
        return {} if self.comparison is None else self.comparison.metrics


def _outputs(task: Task, returned: Any) -> dict[str, np.ndarray]:
    """A method's return value as outputs by name."""
    outputs = getattr(returned, "outputs", returned)
    if isinstance(outputs, Mapping):
        return dict(outputs)
    if isinstance(outputs, np.ndarray):
        return {task.output: outputs}
    raise TypeError(
        f"a method must return an array, a mapping of outputs or a result with outputs; "
        f"got {type(returned).__name__}"
    )


def run_and_score(
    task: str | Task,
    methods: Sequence[Method],
    case: Any,
    reference: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    before: Callable[[Method], None] | None = None,
    after: Callable[[MethodResult], None] | None = None,
    compare_options: Mapping[str, Any] | None = None,
) -> list[MethodResult]:
    """Run each method on ``case`` and compare its prediction with ``reference``.

    Parameters
    ----------
    task : str or Task
        The task whose comparison scores the predictions (``"segmentation"``, ``"qsm"``...).
    methods : sequence of Method
        Run in order.
    case : object
        What each ``method.run`` receives (an :class:`~napari_fanet.tasks.cases.EvalCase`,
        loaded volumes, a prediction request...).
    reference : np.ndarray, optional
        Reference lesion mask or susceptibility map ``(X, Y, Z)`` on the predictions' grid;
        None: the methods run and nothing is scored.
    mask : np.ndarray, optional
        Brain mask ``(X, Y, Z)`` (QSM scores inside it).
    before, after : callable, optional
        Called with each method before it runs, and with its result once it is scored (for
        progress lines).
    compare_options : mapping, optional
        Keyword options of the task's comparison (segmentation: ``min_size``).

    Returns
    -------
    list of MethodResult
        One per method, in order.
    """
    from napari_fanet.tasks import get_task

    chosen = get_task(task)
    results = []
    for method in methods:
        if before is not None:
            before(method)
        start = time.perf_counter()
        returned = method.run(case)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        outputs = _outputs(chosen, returned)
        comparison = (
            None
            if reference is None
            else chosen.compare(outputs, reference, mask, **dict(compare_options or {}))
        )
        scoring = time.perf_counter() - start
        result = MethodResult(method, returned, outputs, comparison, seconds, scoring)
        if after is not None:
            after(result)
        results.append(result)
    return results


def predict_and_compare(
    request: PredictionRequest,
    reference: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[PredictionResult, Comparison | None]:
    """Run one prediction request and compare it with ``reference`` (the widget's job).

    Parameters
    ----------
    request : PredictionRequest
        The checked request (:meth:`~.PredictionRequest.problems` empty).
    reference, mask : np.ndarray, optional
        As in :func:`run_and_score`; None: no comparison.
    progress, should_stop : callable, optional
        Passed to :meth:`~.PredictionRequest.run` (tiles done of total; the stop flag).

    Returns
    -------
    tuple of (PredictionResult, Comparison or None)
        The prediction and its comparison (None without a reference).
    """
    method = Method(str(request.model), lambda r: r.run(progress, should_stop))
    (result,) = run_and_score(request.task, [method], request, reference, mask)
    return result.returned, result.comparison
