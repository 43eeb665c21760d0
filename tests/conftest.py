"""Shared fixtures. No test touches the network: sockets are blocked except loopback."""

import socket

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    real_connect = socket.socket.connect

    def guarded_connect(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")) \
                and self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network access blocked in tests: {address}")
        return real_connect(self, address, *args, **kwargs)

    socket.socket.connect = guarded_connect
    yield
    socket.socket.connect = real_connect


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
