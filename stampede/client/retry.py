"""When to try again, and how long to wait first (the browser SDK's rule)."""

import random
from dataclasses import dataclass

from stampede.client.errors import StampedeError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    """Tries in all."""
    base_s: float = 0.2
    """The first backoff, doubled each try."""
    cap_s: float = 8.0
    """No wait is longer; a Retry-After beyond it is raised rather than waited for."""
    jitter: float = 0.3
    """Up to this fraction is added to each wait at random (callers spread out)."""

    def delay(self, attempt: int, error: StampedeError, safe: bool) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None: raise `error`."""
        if not safe or not error.retryable or attempt >= self.attempts:
            return None
        backoff: float = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        wait: float = max(backoff, error.retry_after_s or 0.0)
        if wait > self.cap_s:
            return None
        return wait * (1 + random.random() * self.jitter)
