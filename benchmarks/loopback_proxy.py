"""A TCP forwarder whose connections reach the server from another loopback address.

Chromium cannot choose its source address, and every connection to 127.0.0.1 comes from 127.0.0.1. The
whole 127.0.0.0/8 range is this machine, so a browser pointed at this forwarder reaches the app from
`source` (e.g. 127.0.0.2), and the app sees a second visitor. Used by bench_fairness.py and the browser
test; it only ever listens on and connects to loopback addresses.
"""

from __future__ import annotations

import ipaddress
import socket
import threading


class LoopbackProxy:
    def __init__(self, target_port: int, source: str = "127.0.0.2"):
        if not ipaddress.ip_address(source).is_loopback:
            raise ValueError("the proxy connects from loopback addresses only")
        self.target = ("127.0.0.1", target_port)
        self.source = source
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket()
            upstream.bind((self.source, 0))
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                upstream.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
