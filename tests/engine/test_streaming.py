import threading
import time

import pytest

from napari_fanet.engine.streaming import Progress, stream_job


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_progress_events_arrive_in_order_and_result_is_returned() -> None:
    def job(progress, should_stop):
        for i in range(1, 4):
            progress(i, 3)
        return "done"

    events, value = _drain(stream_job(job))
    reported = [e for e in events if e.total]
    assert [e.done for e in reported][-3:] == [1, 2, 3]
    assert value == "done"
    assert reported[-1].fraction == 1.0


def test_error_of_the_job_is_raised_in_the_consumer() -> None:
    def job(progress, should_stop):
        raise ValueError("bad input: expected 3D")

    with pytest.raises(ValueError, match="expected 3D"):
        _drain(stream_job(job))


def test_closing_the_generator_stops_the_job_and_joins_its_thread() -> None:
    started = threading.Event()
    seen_stop = threading.Event()

    def job(progress, should_stop):
        started.set()
        while not should_stop():
            time.sleep(0.01)
        seen_stop.set()
        raise RuntimeError("cancelled")

    gen = stream_job(job, poll_s=0.01)
    next(gen)
    assert started.wait(5)
    gen.close()
    assert seen_stop.is_set()
    assert not any(t.name == "napari-fanet job" and t.is_alive() for t in threading.enumerate())


def test_progress_fraction_with_unknown_total_is_zero() -> None:
    assert Progress(3, 0).fraction == 0.0
    assert Progress(5, 4).fraction == 1.0
