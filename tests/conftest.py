"""Shared fixtures. No test touches the network: sockets are blocked except loopback, here and (through
tests/offline/sitecustomize.py, which `make test` puts on PYTHONPATH) in the notebook kernels."""

import pytest
import torch

from tests.offline.sitecustomize import block_network


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    block_network()
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
