"""OpenVINO export, backend and benchmark modes (the cases are in openvino_cases.py).

They run in an interpreter of their own: in one pytest process, after the torch / ONNX Runtime tests, loading
OpenVINO's CPU plugin crashed the whole run (SIGSEGV, twice on the 2-core Zen 4 machine) although every case
passes on its own: their native runtimes (oneDNN, TBB/OpenMP) do not always coexist in one process. A crash
there now fails this one test with its output instead of taking the suite down.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_openvino_cases_in_their_own_process(trained_checkpoint):
    pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[openvino]')")
    # the cases use this session's trained checkpoint (conftest.trained_checkpoint) instead of training their own
    env = dict(os.environ, GHOSTDET_TEST_DETECT_MODEL=str(trained_checkpoint.parents[1]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "openvino_cases.py")],
                          cwd=HERE.parent, capture_output=True, text=True, timeout=1200, env=env)
    tail = (proc.stdout[-6000:] + "\n" + proc.stderr[-3000:]).strip()
    assert proc.returncode == 0, f"openvino_cases.py exited {proc.returncode}:\n{tail}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail
