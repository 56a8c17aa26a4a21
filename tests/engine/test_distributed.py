import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

#: Packaging, benchmark smoke runs, DDP and the demo: run by default, deselect with
#: ``-m "not integration"``.
pytestmark = pytest.mark.integration


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_with_gloo_agree_on_weights(tmp_path, ms_dataset):
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        f"--master_port={_free_port()}", "--master_addr=127.0.0.1",
        str(worker), str(ms_dataset), str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [
        e
        for r in (0, 1)
        for e in json.loads((tmp_path / "run" / f"events-rank{r}.json").read_text())
    ]
    done = {e.get("rank", 0): e for e in events if e["event"] == "done"}
    assert set(done) == {0, 1}
    assert done[0]["weights_fingerprint"] == done[1]["weights_fingerprint"]
    starts = [e for e in events if e["event"] == "start"]
    assert all(e["world"] == 2 for e in starts)
    first = {
        e.get("rank", 0): e["loss"] for e in events if e["event"] == "step" and e["step"] == 1
    }
    assert first[0] != first[1]  # each rank trained on its own patches
    assert (tmp_path / "run" / "last.pt").is_file()
    assert len([e for e in events if e["event"] == "validation"]) == 1  # rank 0 only
