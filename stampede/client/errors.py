"""A refusal of the API (or no answer at all), with its stable code."""

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson


class StampedeError(Exception):
    """`status` 0 and code "network" when no answer came; else the API's error body."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None,
                 retry_after_s: float | None = None, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.body = body or {}
        self.retry_after_s = retry_after_s
        self.request_id = request_id

    @property
    def details(self) -> dict[str, Any]:
        """The `error` object: code, message and any extras (challenge, retry_after_ms)."""
        err = self.body.get("error")
        return err if isinstance(err, dict) else {}

    @property
    def retryable(self) -> bool:
        """Waiting may help: the network, throttled, unavailable, a request still in flight."""
        return self.status in (0, 429, 503) or (
            self.status == 409 and self.code == "conflict" and self.retry_after_s is not None)

    @classmethod
    def network(cls, exc: BaseException) -> "StampedeError":
        return cls(0, "network", f"{type(exc).__name__}: {exc}")

    @classmethod
    def of(cls, status: int, raw: bytes, headers: Any) -> "StampedeError":
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        return cls(status, str(err.get("code", "error")), str(err.get("message", f"HTTP {status}")),
                   body if isinstance(body, dict) else None, _retry_after(err, headers),
                   headers.get("X-Request-Id"))


def _retry_after(err: dict[str, Any], headers: Any) -> float | None:
    exact = err.get("retry_after_ms")
    if isinstance(exact, int | float) and math.isfinite(exact):
        return max(0.0, exact / 1000)
    text = headers.get("Retry-After")
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(text) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
