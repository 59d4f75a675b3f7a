"""Presales on the admin API: issue a batch of presale codes, export its codes as CSV;
add user ids to an audience segment or remove them, the list streamed in."""

import msgspec
from aiohttp import web

from stampede.api.context import ADMIN, ENGINE
from stampede.api.errors import decode, json_response, read_body, refuse
from stampede.api.routing import CID, SKU, ApiRoutes
from stampede.domain.models import (
    AllocationReturn,
    PresaleBatchView,
    PresaleCodeBatch,
    SegmentChange,
)
from stampede.domain.segments import MAX_IDS_PER_REQUEST
from stampede.outcomes import Outcome

admin_api = ApiRoutes("admin")

_batch_decoder = msgspec.json.Decoder(PresaleCodeBatch)
BATCH = {"batch": r"^[1-9][0-9]{0,5}$"}
_LINES_PER_WRITE = 1000


@admin_api.route("POST", "/admin/v1/campaigns/{cid}/presale-codes",
                 "Issue a batch of presale codes (each lends its claim the batch's tier)",
                 auth="operator", body=PresaleCodeBatch, response=PresaleBatchView, status=201,
                 errors=(400, 401, 403, 404, 413, 503), path_params=CID)
async def issue_codes(request: web.Request) -> web.Response:
    spec = decode(_batch_decoder, await read_body(request))
    cid = request.match_info["cid"]
    outcome, reason, batch = await request.app[ENGINE].presale_codes.issue(
        cid, spec, request[ADMIN].name)
    if outcome is not Outcome.OK or batch is None:
        return refuse(reason or outcome.reason, {"campaign": cid})
    return json_response(batch, status=201)


@admin_api.route("GET", "/admin/v1/campaigns/{cid}/presale-codes/{batch}/codes.csv",
                 "A batch's codes as CSV (code, batch, serial, tier, uses), to distribute",
                 auth="operator", media_type="text/csv", errors=(401, 403, 404, 503),
                 path_params={**CID, **BATCH})
async def export_codes(request: web.Request) -> web.StreamResponse:
    cid = request.match_info["cid"]
    engine = request.app[ENGINE]
    batch = await engine.presale_codes.batch(cid, int(request.match_info["batch"]))
    if batch is None:
        return refuse("no_presale_batch", {"campaign": cid})
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{cid}-presale-{batch.batch}.csv"'})
    await resp.prepare(request)
    chunk: list[str] = []
    for line in engine.presale_codes.csv_lines(cid, batch):  # streamed: 100,000 codes fit
        chunk.append(line)
        if len(chunk) >= _LINES_PER_WRITE:
            await resp.write("".join(chunk).encode())
            chunk.clear()
    await resp.write("".join(chunk).encode())
    await resp.write_eof()
    return resp


ALLOCATION = {**SKU, "name": r"^[A-Za-z0-9_-]{1,32}$"}


@admin_api.route("POST", "/admin/v1/campaigns/{cid}/skus/{sku}/allocations/{name}/return",
                 "Return an allocation's unused units to the SKU's shared pool, now",
                 auth="operator", response=AllocationReturn, errors=(401, 403, 404, 409, 503),
                 path_params={**CID, **ALLOCATION})
async def return_allocation(request: web.Request) -> web.Response:
    cid, sku = request.match_info["cid"], request.match_info["sku"]
    name = request.match_info["name"]
    outcome, reason, units = await request.app[ENGINE].return_allocation(
        cid, sku, name, request[ADMIN].name)
    if outcome is not Outcome.OK:
        return refuse(reason, {"campaign": cid, "sku": sku, "allocation": name})
    return json_response(AllocationReturn(sku=sku, allocation=name, returned=units))


SEGMENT = {"segment": r"^[A-Za-z0-9_-]{1,32}$"}


@admin_api.route("POST", "/admin/v1/campaigns/{cid}/segments/{segment}/members",
                 "Add user ids to an audience segment (or remove them, action=remove): a "
                 "text/plain body of one user id a line, streamed in", auth="operator",
                 response=SegmentChange, errors=(400, 401, 403, 404, 408, 503),
                 path_params={**CID, **SEGMENT},
                 query_params={"action": (r"^(add|remove)$", False)})
async def edit_segment(request: web.Request) -> web.Response:
    cid, segment = request.match_info["cid"], request.match_info["segment"]
    ids = await _read_ids(request)
    outcome, reason, change = await request.app[ENGINE].segments.edit(
        cid, segment, request.query.get("action", "add") == "add", ids, request[ADMIN].name)
    if outcome is not Outcome.OK or change is None:
        return refuse(reason or outcome.reason, {"campaign": cid})
    return json_response(change)


async def _read_ids(request: web.Request) -> list[str]:
    """The body's user ids, one a line (blank lines skipped), read as it streams in:
    the admin body limit does not apply, the id count limit does."""
    ids: list[str] = []
    pending = b""
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        ids += [line.strip().decode("utf-8", "replace") for line in lines if line.strip()]
        if len(ids) > MAX_IDS_PER_REQUEST:
            break  # refused whole: no need to read the rest
    if pending.strip():
        ids.append(pending.strip().decode("utf-8", "replace"))
    return ids
