"""Shared test fixtures: the device matrix and one torch thread."""

import pytest
import torch


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def device(request) -> str:
    """Every test that takes `device` runs on the CPU, and on CUDA where there is one."""
    return request.param


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from 2 threads, and on a shared 2-core machine a descheduled
    OpenMP thread stalls every op at its barrier (steps ran 10-100x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
