"""A TCP gate in front of the SMTP capture that makes mail-server faults for real.

``pass``: every connection is piped to the upstream server. ``refuse``: nothing listens on the port (the
client's connect is refused). ``hang``: connections are accepted and never answered, not even with the SMTP
greeting; they stay open until the gate closes. Switching modes never touches connections already piped.
"""

import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["pass", "refuse", "hang"]


class Gate:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.upstream_port = host, upstream_port
        self.mode: Mode = "pass"
        self.accepted = 0
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._closing = False
        probe = socket.socket()
        probe.bind((host, 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._listen()

    def set(self, mode: Mode) -> None:
        with self._lock:
            if mode == self.mode:
                return
            was, self.mode = self.mode, mode
        if mode == "refuse":
            self._unlisten()
        elif was == "refuse":
            self._listen()

    def close(self) -> None:
        self._closing = True
        self._unlisten()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True, name="gate-accept")
        self._thread.start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed by _unlisten
            self.accepted += 1
            self._held.append(conn)
            if self.mode == "pass":
                threading.Thread(target=self._pipe, args=(conn,), daemon=True, name="gate-pipe").start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((self.host, self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(upstream, client), daemon=True, name="gate-down").start()
        pump(client, upstream)
        client.close()
        upstream.close()
