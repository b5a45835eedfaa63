"""A real local HTTP endpoint that records what Apprise's json:// posts to it, and the signed headers a clinic sends."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.posts: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        """The Apprise URL that posts JSON here."""
        host, port = self.server.server_address[:2]
        return f"json://{host!s}:{port}/hooks/needlecare"


@contextmanager
def webhook() -> Iterator[Webhook]:
    holder: list[Webhook] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            holder[0].posts.append({"path": self.path, "body": json.loads(body or b"{}")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook = Webhook(server)
    holder.append(hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


def signed_headers(raw: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers a clinic's system sends with ``raw``: JSON, signed ``t=<unix time>,v1=<hex>`` (now by default)."""
    from needlecare.core.signing import SIGNATURE_HEADER, sign

    return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(raw, secret, timestamp=timestamp)}
