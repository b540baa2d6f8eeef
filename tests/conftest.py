"""Shared fixtures. Real test data comes from ../shared/data (override with GHOSTDET_SHARED_DATA)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("GHOSTDET_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only test data folder; tests that need it are skipped (with the reason) when it is absent."""
    path = shared_data_dir()
    if not (path / "coco128").is_dir():
        pytest.skip(f"shared test data not found at {path} (set GHOSTDET_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def coco128(shared_data) -> Path:
    return shared_data / "coco128"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Small forward passes run faster on one thread than on oversubscribed ones on a shared 2-core CPU;
    the caller's setting is restored afterwards. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
