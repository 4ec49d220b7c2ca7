"""A tiny HTTP/1.1 server on 127.0.0.1 that answers every request with one canned response.

Stands in for the real Bambu cloud where a test needs answers the fake cloud never gives
(malformed bodies, odd shapes). It records what it received so a test can assert what went out.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class CannedHttp:
    def __init__(self, body: bytes = b"{}", status: int = 200, content_type: str = "application/json") -> None:
        self.body, self.status, self.content_type = body, status, content_type
        self.received: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="canned-http", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value.strip())
                    while len(rest) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        rest += chunk
                    self.received.append(head + b"\r\n\r\n" + rest)
                    conn.sendall(
                        f"HTTP/1.1 {self.status} X\r\nContent-Type: {self.content_type}\r\n"
                        f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode() + self.body
                    )
                except OSError:
                    continue

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)

    def __enter__(self) -> CannedHttp:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()
