"""Standard Webhooks signatures: secrets, and the three headers of a delivery.

    webhook-id         the message's stable id (`<campaign>.<seq>`): the same on every retry
    webhook-timestamp  seconds since the epoch, of this attempt
    webhook-signature  `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated
                       when an old secret still signs beside the new one

A secret is `whsec_` and the base64 of its 24 random key bytes.
"""

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 24


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_in_force: list[str], msg_id: str, timestamp: int,
            body: bytes) -> dict[str, str]:
    """The headers of one attempt, signed with every secret in force (newest first)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signature(s, msg_id, timestamp, body)
                                          for s in secrets_in_force),
            "Content-Type": "application/json"}
