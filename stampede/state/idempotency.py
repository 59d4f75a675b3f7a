"""First answers of idempotent operations that are not claims.

Claims keep their idempotency inside the claim script (the key and its
answer are written by the same script). Confirm and cancel are idempotent by
nature (a second confirm changes nothing); this memory only lets a retry
get the very first answer back, and spots a key reused for another request.
"""

import msgspec
from redis.asyncio import Redis

from stampede.state import keys
from stampede.state.records import StoredAnswer

# The engine's client decodes replies as text, so the record is JSON text.
_codec = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(StoredAnswer)


def record(fingerprint: str, status: int, body: bytes) -> bytes:
    """A remembered answer as stored (recovery writes the same from the store)."""
    return _codec.encode(StoredAnswer(fingerprint=fingerprint, status=status,
                                      body=body.decode()))


def fingerprint(op: str, claim_id: str) -> str:
    """What a confirm or cancel request is, to spot a key reused for another."""
    return f"{op} {claim_id}"


class ResponseMemory:
    def __init__(self, redis: "Redis", ttl_s: int) -> None:
        self._redis = redis
        self._ttl_ms = ttl_s * 1000

    async def recall(self, cid: str, user: str, key: str) -> tuple[str, int, bytes] | None:
        """(fingerprint, status, body) of the first answer under this key, if any."""
        raw = await self._redis.get(keys.response_key(cid, user, key))
        if raw is None:
            return None
        answer = _decode.decode(raw)
        return answer.fingerprint, answer.status, answer.body.encode()

    async def remember(self, cid: str, user: str, key: str, fingerprint: str, status: int,
                       body: bytes) -> None:
        # NX: the first answer wins, a concurrent retry cannot overwrite it.
        await self._redis.set(keys.response_key(cid, user, key),
                              record(fingerprint, status, body), px=self._ttl_ms,
                              nx=True)
