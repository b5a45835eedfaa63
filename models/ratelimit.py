"""Rate-limit state shared by every web worker: one row per limited key (needlecare.web.ratelimit).

``key`` is ``<limit>:<HMAC of the client address, token, clinic or email>``: nothing in it identifies a person.
A token bucket keeps ``tokens`` (refilled continuously) as of ``stamp``; ``allowed`` is the verdict of the
last request. A growing-delay key (logins) counts ``strikes`` and refuses attempts before ``until``. Times are
unix seconds (floats), so the refill arithmetic is the same SQL on SQLite and PostgreSQL.
"""

from sqlmodel import Field, SQLModel


class RateBucket(SQLModel, table=True):
    __tablename__ = "rate_bucket"

    key: str = Field(primary_key=True, max_length=100)
    tokens: float = Field(default=0.0, description="Requests left in the bucket at `stamp`")
    stamp: float = Field(default=0.0, index=True, description="Unix time of the last request")
    allowed: bool = Field(default=True, description="Whether the last request was let through")
    strikes: int = Field(default=0, description="Attempts since the last success (growing delay)")
    until: float = Field(default=0.0, description="Unix time before which an attempt is refused (growing delay)")
