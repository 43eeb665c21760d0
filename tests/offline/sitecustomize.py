"""Cut the network, except loopback, in every Python process the test suite starts.

Python imports `sitecustomize` at start-up from its path, so with PYTHONPATH=tests/offline and BERTNB_OFFLINE=1
(both set by `make test`) the notebook kernels nbval starts are offline too, not only the pytest process:
a chapter that reached for a hub or a download would fail its test here. Loopback stays open (the kernels
talk to nbval over it; Netron serves on it).
"""

import os
import socket


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return not isinstance(host, str) or host.startswith("127.") or host in ("localhost", "::1")


def block_network() -> None:
    """Make every TCP/UDP connect to a non-loopback address raise OSError. Idempotent."""
    if getattr(socket.socket.connect, "bertnb_offline", False):
        return
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(sock, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise OSError(f"network access blocked in the bertnb test suite: {address}")

    def connect(self, address, *args, **kwargs):
        refuse(self, address)
        return real_connect(self, address, *args, **kwargs)

    def connect_ex(self, address, *args, **kwargs):
        refuse(self, address)
        return real_connect_ex(self, address, *args, **kwargs)

    connect.bertnb_offline = connect_ex.bertnb_offline = True
    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex


if os.environ.get("BERTNB_OFFLINE") == "1":
    block_network()
