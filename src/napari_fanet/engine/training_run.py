"""Run ``napari-fanet train`` in a child process, follow its events, stop it, publish the model.

The Train widget (and anyone else) describes a run with a :class:`TrainRequest`;
:class:`TrainingRun` starts ``sys.executable -m napari_fanet train ... --events`` in its own
process group (so the viewer stays responsive, GPU memory is released when the child exits, and a
Ctrl-C in napari's terminal does not reach it), and :meth:`TrainingRun.events` is a generator of
the child's JSON events, its other output lines as ``{"event": "log"}``, and a final
``{"event": "exit"}``; it returns a :class:`RunOutcome`. Use it in a napari ``thread_worker``.

:meth:`TrainingRun.stop` asks for a graceful stop (SIGINT: the child finishes the current step
and writes a loadable ``last.pt``), escalating to SIGTERM and then SIGKILL if the child does not
exit in time; :meth:`TrainingRun.shutdown` is the blocking form used when napari closes, and an
``atexit`` hook shuts down any child still running when Python exits. Every output line of the
child goes to ``RUN/train-output.log``. After a finished or stopped run,
:func:`napari_fanet.engine.model_card.publish_model` writes the model card and adds the model to
the catalog. GUI-free.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import weakref
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHILD_LOG = "train-output.log"
LOG_TAIL_LINES = 200
STOP_GRACE_S = 120.0  # SIGINT -> SIGTERM: a step, or a validation pass on the CPU, must fit
KILL_AFTER_S = 15.0  # SIGTERM -> SIGKILL
DEVICES = ("auto", "cuda", "mps", "cpu")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b")


@dataclass(frozen=True)
class TrainRequest:
    """One training run: the arguments of ``napari-fanet train``.

    Parameters
    ----------
    data : Path
        Training subjects folder (``RUN/data`` from :mod:`~.training_export`).
    out : Path
        Run folder for the log and checkpoints.
    init : Path, optional
        Checkpoint to fine-tune (``--init``). Exactly one of ``init`` and ``model``.
    model : str, optional
        Registry name of a new, randomly initialised model (``--model``).
    val : Path, optional
        Validation subjects folder (``--val``).
    steps, lr, batch_size, patch_size, val_every, device, threads, seed
        As the command-line options of the same names.
    features : tuple of 5 int, optional
        Width of a new model (ignored with ``init``).
    augment : bool
        Data augmentation (``--no-augment`` when False).
    """

    data: Path
    out: Path
    init: Path | None = None
    model: str | None = None
    val: Path | None = None
    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (64, 64, 64)
    val_every: int = 50
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    features: tuple[int, ...] | None = None
    augment: bool = True

    def __post_init__(self) -> None:
        if (self.init is None) == (self.model is None):
            raise ValueError(
                f"give exactly one of init (a checkpoint) and model (a registry name), got "
                f"init={self.init!r}, model={self.model!r}"
            )
        checks = {
            "steps": self.steps >= 1,
            "lr": 0 < self.lr <= 1,  # as ``train --lr``; refuses NaN
            "batch_size": self.batch_size >= 1,
            "val_every": self.val_every >= 0,
            "patch_size": len(self.patch_size) == 3  # as ``train --patch-size``
            and all(16 <= p <= 512 for p in self.patch_size),
            "device": self.device in DEVICES,
            "threads": self.threads is None or self.threads >= 1,
            "seed": self.seed >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid training setting {name}={getattr(self, name)!r}")

    def command(self, python: str | None = None) -> list[str]:
        """The exact child command: ``python -m napari_fanet train ... --events``."""
        cmd = [python or sys.executable, "-m", "napari_fanet", "train"]
        cmd += ["--data", str(self.data), "--out", str(self.out)]
        if self.init is not None:
            cmd += ["--init", str(self.init)]
        else:
            cmd += ["--model", str(self.model)]
            if self.features is not None:
                cmd += ["--features", *(str(f) for f in self.features)]
        if self.val is not None:
            cmd += ["--val", str(self.val)]
        cmd += ["--steps", str(self.steps), "--lr", repr(float(self.lr))]
        cmd += ["--batch-size", str(self.batch_size)]
        cmd += ["--patch-size", *(str(p) for p in self.patch_size)]
        cmd += ["--val-every", str(self.val_every), "--device", self.device]
        cmd += ["--seed", str(self.seed)]
        if self.threads is not None:
            cmd += ["--threads", str(self.threads)]
        if not self.augment:
            cmd.append("--no-augment")
        return [*cmd, "--events"]


def _absolute_paths(request: TrainRequest) -> TrainRequest:
    """``request`` with its folders and checkpoint as absolute paths."""
    paths = {
        name: Path(getattr(request, name)).resolve()
        for name in ("data", "out", "init", "val")
        if getattr(request, name) is not None
    }
    return dataclasses.replace(request, **paths)


def parse_event_line(line: str) -> dict:
    """A child output line as an event: its JSON event, else ``{"event": "log", "line": ...}``."""
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            return event
    return {"event": "log", "line": text}


def format_event(event: dict) -> str:
    """One human-readable log line for an event."""
    kind = event.get("event")
    if kind == "log":
        return str(event.get("line", ""))
    if kind == "step":
        return f"step {event['step']}/{event['steps']}  loss {event['loss']:.4f}"
    if kind == "validation":
        values = ", ".join(
            f"{k} {v:.4f}" for k, v in event.items() if k not in ("event", "step", "rank")
        )
        return f"validation at step {event['step']}: {values}"
    if kind == "checkpoint":
        return f"saved {Path(event['path']).name} at step {event['step']}"
    if kind == "start":
        return (
            f"training {event.get('model')} on {event.get('device')}: steps "
            f"{event.get('step', 0) + 1}-{event.get('steps')}"
        )
    if kind in ("done", "stopped"):
        return f"{kind} at step {event['step']}"
    if kind == "exit":
        return f"training {event['status']} (exit status {event['returncode']})"
    return json.dumps(event)


@dataclass
class RunOutcome:
    """How a run ended.

    ``status`` is ``"done"`` (all steps), ``"stopped"`` (stopped on request; ``checkpoint`` is
    ``last.pt``, or None when the stop came before the first one) or ``"failed"`` (the child
    crashed); ``message`` says why in one line and ``log_tail`` holds the last output lines.
    """

    status: str
    returncode: int
    run_dir: Path
    steps_done: int = 0
    steps: int | None = None
    last_loss: float | None = None
    last_validation: dict | None = None
    checkpoint: Path | None = None
    message: str = ""
    log_tail: list[str] = field(default_factory=list)

    def as_event(self) -> dict:
        """The final ``{"event": "exit", ...}`` of :meth:`TrainingRun.events`."""
        return {
            "event": "exit",
            "status": self.status,
            "returncode": self.returncode,
            "steps_done": self.steps_done,
            "message": self.message,
        }


_LIVE: weakref.WeakSet[TrainingRun] = weakref.WeakSet()


def _shutdown_live_runs() -> None:
    for run in list(_LIVE):
        run.shutdown(timeout=3.0)


atexit.register(_shutdown_live_runs)


class TrainingRun:
    """A ``napari-fanet train`` child process; see the module docstring.

    Parameters
    ----------
    request : TrainRequest
        What to run.
    python : str, optional
        Interpreter (default ``sys.executable``).
    """

    def __init__(self, request: TrainRequest, *, python: str | None = None) -> None:
        self.request = request
        # absolute paths: the child runs in the run folder (see :meth:`_env`)
        self.command = _absolute_paths(request).command(python)
        self.run_dir = Path(request.out)
        self.log_path = self.run_dir / CHILD_LOG
        self._proc: subprocess.Popen | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

    # ------------------------------------------------------------------ process
    def _env(self) -> dict[str, str]:
        """The child's environment: napari_fanet importable, and nothing from napari's folder.

        ``python -m`` puts the working directory first on ``sys.path``, so a file such as
        ``argparse.py`` in the folder napari was started from would be imported by the child.
        ``PYTHONSAFEPATH`` (Python 3.11+) stops that, and the child also runs in the run folder
        (:meth:`start`), which holds only what the run writes.
        """
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding napari_fanet
        extra = filter(None, env.get("PYTHONPATH", "").split(os.pathsep))
        paths = [package_root, *(str(Path(p).resolve()) for p in extra)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONSAFEPATH"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        if self.request.threads:
            env["OMP_NUM_THREADS"] = str(self.request.threads)
        return env

    def start(self) -> None:
        """Start the child (once)."""
        with self._lock:
            if self._proc is not None:
                raise RuntimeError("this training run was started already")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            posix = os.name == "posix"
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                env=self._env(),
                cwd=self.run_dir.resolve(),
                start_new_session=posix,
                creationflags=0 if posix else subprocess.CREATE_NEW_PROCESS_GROUP,
            )
            _LIVE.add(self)
        log.info("started training child %d: %s", self._proc.pid, " ".join(self.command))

    @property
    def pid(self) -> int | None:
        """Process id of the child (None before :meth:`start`)."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the child has started and not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` or :meth:`shutdown` was called."""
        return self._stop_requested

    def _send(self, sig: int) -> None:
        if not self.running:
            return
        assert self._proc is not None
        try:
            if os.name == "posix":
                os.killpg(self._proc.pid, sig)  # its own group: start_new_session
            else:  # no SIGINT for a child on Windows: the run ends at its last saved checkpoint
                self._proc.terminate()
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float = STOP_GRACE_S, kill_after: float = KILL_AFTER_S) -> None:
        """Ask the child to stop after its current step; returns at once.

        If it is still running ``grace`` seconds later it gets SIGTERM (an abort: ``last.pt`` is
        then the last one saved), and SIGKILL ``kill_after`` seconds after that.
        """
        if not self.running or self._stop_requested:
            return
        self._stop_requested = True
        self._send(signal.SIGINT)
        threading.Thread(
            target=self._escalate, args=(grace, kill_after), daemon=True, name="fanet-train-stop"
        ).start()

    def _escalate(self, grace: float, kill_after: float) -> None:
        assert self._proc is not None
        for sig, wait in ((signal.SIGTERM, grace), (getattr(signal, "SIGKILL", None), kill_after)):
            try:
                self._proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                if sig is None:
                    self._proc.kill()
                else:
                    log.warning("training child %d did not stop: sending %s", self.pid, sig)
                    self._send(sig)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the child and wait for it (SIGINT, then SIGKILL after ``timeout`` seconds)."""
        if not self.running:
            return
        assert self._proc is not None
        if not self._stop_requested:
            self._stop_requested = True
            self._send(signal.SIGINT)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._send(getattr(signal, "SIGKILL", signal.SIGTERM))
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                log.error("training child %d did not exit", self.pid)

    # ------------------------------------------------------------------ events
    def events(self) -> Generator[dict, None, RunOutcome]:
        """Start the child if needed; yield its events until it exits; return the outcome."""
        if self._proc is None:
            self.start()
        assert self._proc is not None and self._proc.stdout is not None
        seen: dict[str, Any] = {"steps_done": 0, "steps": None, "loss": None, "val": None}
        ending = None
        with open(self.log_path, "a", encoding="utf-8") as log_file:
            log_file.write(f"$ {' '.join(self.command)}\n")
            for raw in iter(self._proc.stdout.readline, ""):
                log_file.write(raw)
                log_file.flush()
                event = parse_event_line(raw)
                kind = event["event"]
                if kind == "step":
                    seen.update(steps_done=event["step"], steps=event["steps"], loss=event["loss"])
                elif kind == "start":
                    seen.update(steps_done=event.get("step", 0), steps=event.get("steps"))
                elif kind == "validation":
                    seen["val"] = {k: v for k, v in event.items() if k not in ("event", "rank")}
                elif kind in ("done", "stopped"):
                    ending = kind
                self.tail.append(format_event(event))
                yield event
            returncode = self._proc.wait()
            self._proc.stdout.close()
            outcome = self._outcome(returncode, ending, seen)
            log_file.write(f"# {outcome.status}: {outcome.message}\n")
        _LIVE.discard(self)
        self.tail.append(format_event(outcome.as_event()))
        outcome.log_tail = list(self.tail)
        yield outcome.as_event()
        return outcome

    def _outcome(self, returncode: int, ending: str | None, seen: dict) -> RunOutcome:
        last = self.run_dir / "last.pt"
        texts = [t for t in self.tail if t.strip()]
        outcome = RunOutcome(
            "failed",
            returncode,
            self.run_dir,
            steps_done=int(seen["steps_done"] or 0),
            steps=seen["steps"],
            last_loss=seen["loss"],
            last_validation=seen["val"],
            checkpoint=last if last.is_file() else None,
        )
        if returncode == 0 and ending in ("done", "stopped"):
            outcome.status = ending
            outcome.message = f"{ending} after {outcome.steps_done} steps"
        elif self._stop_requested:
            outcome.status = "stopped"
            outcome.message = (
                f"stopped by a signal (exit status {returncode}); last.pt is from the last "
                "saved step"
                if outcome.checkpoint is not None
                else f"stopped before any checkpoint was written (exit status {returncode})"
            )
        else:
            why = _failure_line(texts)
            outcome.message = f"the training process failed (exit status {returncode}): {why}"
        return outcome


def _failure_line(lines: Sequence[str]) -> str:
    """The line that best says why a child failed: the CLI's error, else an exception line."""
    for line in reversed(lines):
        if line.startswith("napari-fanet train: "):
            return line
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[-1] if lines else "no output"
