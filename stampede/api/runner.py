"""An AppRunner whose own HTTP errors are JSON, like every other answer.

aiohttp answers a request its parser refuses (a header line over 8190 bytes,
a bad method, a control byte in the path) before any middleware runs, in
text/plain. aiohttp has no public hook for that answer: it is
`RequestHandler.handle_error`, and the handler class is fixed by `Server`.
So the runner's server makes our handler, whose `handle_error` answers in
the `{"error": {"code", "message"}}` shape with a stable code:
`malformed_request` for what the parser refused (400), `internal` for a
failure outside our middleware (500), `unavailable` for a timeout.
"""

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from stampede.api.errors import error
from stampede.logs import log
from stampede.outcomes import REFUSALS

MALFORMED = "malformed_request"
_MESSAGE_CHARS = 200


class JsonErrorRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer protocol errors in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # same state; only the handler class differs
        return server


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _JsonErrorHandler(RequestHandler):
    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:  # not the client's doing: aiohttp logs it with its traceback
            super().handle_error(request, status, exc, message)
        else:  # a client's malformed request is not our error: one line, no traceback
            log.info("malformed request refused", status=status, reason=_reason(message))
            if request.writer.output_size > 0:  # as aiohttp: too late to answer
                raise ConnectionError("response already started")
        response = error(status, *_code_and_message(status, message))
        response.force_close()
        return response


def _code_and_message(status: int, message: str | None) -> tuple[str, str]:
    """Code and message from REFUSALS (stampede/outcomes.py)."""
    if status < 500:
        r = REFUSALS[MALFORMED]
        return r.code, r.message({"detail": _reason(message)})
    if status in (503, 504):
        r = REFUSALS["timed_out"]
        return r.code, r.message({})
    return "internal", "internal error"


def _reason(message: str | None) -> str:
    """The parser's first line (it may quote the raw bytes after it), kept short."""
    first = (message or "bad request").strip().splitlines()[0].rstrip(":")
    return first[:_MESSAGE_CHARS]
