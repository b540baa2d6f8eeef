"""The benchmark's SIGSEGV at exit (issue 23 §7): OpenVINO's CPU plugin leaves the main thread's alternate signal
stack pointing at freed memory when two compiled models' lifetimes overlap, and the next signal delivered with
SA_ONSTACK (every CPython handler; the SIGCHLD of an exiting DataLoader worker) kills the process. The tools drop
such a stack (``ghostdet.cli.common.drop_dangling_signal_stack``); each case runs in its own interpreter."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT, make_checkpoint, yolo_data_cfg

pytest.importorskip("openvino")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack and /proc/self/maps: Linux")

SCRIPT = textwrap.dedent("""
    import gc, os, signal, sys, time
    import numpy as np, torch, openvino as ov
    from ghostdet.cli.common import drop_dangling_signal_stack

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    x = torch.rand(1, 3, 32, 32)
    first = ov.Core().compile_model(ov.convert_model(net, example_input=x), "CPU")
    first(x.numpy())
    second = ov.Core().compile_model(ov.convert_model(net, example_input=x), "CPU")  # overlapping lifetimes
    second(x.numpy())
    del first
    gc.collect()
    del second
    gc.collect()
    print("dropped" if drop_dangling_signal_stack() else "nothing to drop", flush=True)
    signal.signal(signal.SIGCHLD, lambda *args: None)  # as torch's DataLoader does: installed with SA_ONSTACK
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.2)
    print("survived the SIGCHLD", flush=True)
""")


def test_a_signal_after_two_openvino_models_is_survived():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])  # -11 without the guard
    assert "survived the SIGCHLD" in proc.stdout
    # "dropped" with OpenVINO 2026.4 (the bug); "nothing to drop" once OpenVINO restores its stacks in order
    assert "dropped" in proc.stdout or "nothing to drop" in proc.stdout


@pytest.mark.slow
def test_benchmark_with_two_openvino_models_and_loader_workers_exits_0(yolo_split, tmp_path):
    """The issue's command in small: a checkpoint, data= (so a val loader with workers), two OpenVINO models."""
    names = (yolo_split / "classes.txt").read_text().splitlines()
    weights = make_checkpoint(tmp_path / "weights" / "best.pt", names, imgsz=64)
    data = yolo_data_cfg(yolo_split)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "benchmark.py"), f"models=[{weights}]", "data=yolo",
         f"data.root={data.root}", "data.val=images/val", "data.train=images/val", "data.cache=false", "imgsz=64",
         "batch_sizes=[1,2]", "modes=[openvino]", "warmup=1", "repeats=2", "threads=1", "eval.workers=2",
         f"hydra.run.dir={tmp_path / 'bench'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-1500:], proc.stderr[-3000:])
    assert "Results saved to" in proc.stdout and (tmp_path / "bench" / "benchmark.json").is_file()
