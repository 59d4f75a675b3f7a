"""A self-contained API docs page: renders /openapi.json with no external assets."""

from collections.abc import Awaitable, Callable
from html import escape

from aiohttp import web

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }}
 h1 {{ font-size: 1.5rem; }} code, pre {{ font: 13px ui-monospace, monospace; }}
 .op {{ border: 1px solid #ddd; border-radius: 6px; margin: .8rem 0; padding: .6rem .9rem; }}
 .m {{ display: inline-block; min-width: 4.2rem; font-weight: 600; }}
 .GET {{ color: #0a6; }} .POST {{ color: #06c; }} .PUT {{ color: #a60; }}
 .PATCH {{ color: #a0a; }} .DELETE {{ color: #c22; }}
 details pre {{ background: #f6f6f6; padding: .5rem; overflow-x: auto; }}
 .codes {{ color: #555; font-size: 13px; }}
</style></head>
<body><h1>{title}</h1>
<p>Machine-readable spec: <a href="openapi.json">openapi.json</a> (OpenAPI 3.1).</p>
<div id="ops">loading…</div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {{
  const out = [];
  const schemas = spec.components.schemas;
  const show = s => JSON.stringify(s && s.$ref ? schemas[s.$ref.split("/").pop()] : s, null, 2);
  for (const [path, ops] of Object.entries(spec.paths)) {{
    for (const [method, op] of Object.entries(ops)) {{
      const m = method.toUpperCase();
      const body = op.requestBody ? op.requestBody.content["application/json"].schema : null;
      const codes = Object.entries(op.responses).map(([c, r]) => c + " " + r.description);
      const el = document.createElement("div");
      el.className = "op";
      el.innerHTML = `<span class="m ${{m}}"></span><code></code> — <span class="s"></span>
        <div class="codes"></div>`;
      el.querySelector(".m").textContent = m;
      el.querySelector("code").textContent = path;
      el.querySelector(".s").textContent = op.summary;
      el.querySelector(".codes").textContent = codes.join(" · ");
      if (body) {{
        const d = document.createElement("details");
        d.innerHTML = "<summary>request body</summary><pre></pre>";
        d.querySelector("pre").textContent = show(body);
        el.appendChild(d);
      }}
      out.push(el);
    }}
  }}
  const root = document.getElementById("ops");
  root.textContent = "";
  out.forEach(e => root.appendChild(e));
}});
</script></body></html>
"""


def page(title: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = _PAGE.format(title=escape(title))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    return handler
