"""Reading a request body with a size limit enforced while it streams in.

A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked or under-declared
body is read chunk by chunk and refused as soon as it passes the limit, so an oversized body never sits in
memory whole.
"""

from fastapi import Request


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")
        self.limit = limit


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, or :class:`BodyTooLarge` once more than ``limit`` bytes are declared or received."""
    cached: bytes | None = getattr(request, "_body", None)  # already read by an earlier step of this request
    if cached is not None:
        if len(cached) > limit:
            raise BodyTooLarge(limit)
        return cached
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # later reads of this request (request.body(), form parsing) get the same bytes
    return body
