"""The suite runs offline: the network is cut (except loopback) in this process and in every Python process
it starts, notebook kernels included, and Hugging Face libraries are told not to look for a hub."""

import os
import socket
import subprocess
import sys

import pytest

PROBE = "import socket; print(getattr(socket.socket.connect, 'bertnb_offline', False))"


def test_this_process_refuses_a_non_loopback_connect_before_sending_anything():
    assert getattr(socket.socket.connect, "bertnb_offline", False)  # checked first: without the guard, no connect
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock, pytest.raises(OSError, match="network access blocked"):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: refused by the guard before any packet leaves


@pytest.mark.skipif(os.environ.get("BERTNB_OFFLINE") != "1", reason="run through `make test` (BERTNB_OFFLINE=1)")
def test_child_processes_and_kernels_start_offline():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"  # what a notebook kernel started by nbval inherits too
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
