// Lookups (a user's history; a claim, coupon or redemption with its events; the audit
// log) and the claims export, all through the admin query API.
import { call, download, enc } from "./api.js";
import { el, fmt, table, toast } from "./dom.js";

const PATHS = {
  user: (id) => `/admin/v1/users/${enc(id)}`,
  claim: (id) => `/admin/v1/claims/${enc(id)}`,
  coupon: (id) => `/admin/v1/coupons/${enc(id)}`,
  redemption: (id) => `/admin/v1/redemptions/${enc(id)}`,
  audit: () => "/admin/v1/audit-log",
};

export function setUpLookups() {
  document.getElementById("lookup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = document.getElementById("lookup-kind").value;
    const id = document.getElementById("lookup-id").value.trim();
    const out = document.getElementById("lookup-result");
    if (!id && kind !== "audit") { toast("Give the id to look up", true); return; }
    try {
      const data = await call("GET", PATHS[kind](id));
      out.replaceChildren(el("article", { class: "card", "data-testid": "lookup-result" },
        el("h2", { text: kind === "audit" ? "Audit log" : `${kind} ${id}` }), ...render(data)));
    } catch (err) {
      out.replaceChildren(el("p", { class: "error", role: "alert", text: err.message }));
    }
  });
  document.getElementById("export-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const cid = document.getElementById("export-campaign").value;
    const format = document.getElementById("export-format").value;
    const query = new URLSearchParams({ format });
    for (const name of ["user", "sku", "status"]) {
      const value = document.getElementById(`export-${name}`).value.trim();
      if (value) query.set(name, value);
    }
    const result = document.getElementById("export-result");
    try {
      const size = await download(`/admin/v1/campaigns/${enc(cid)}/claims?${query}`,
        `claims-${cid}.${format}`);
      result.textContent = `Downloaded claims-${cid}.${format} (${size} bytes).`;
      result.className = "";
    } catch (err) {
      result.textContent = err.message;
      result.className = "error";
    }
  });
}

export function setExportCampaigns(ids) {
  const select = document.getElementById("export-campaign");
  const names = ids.join(",");
  if (select.dataset.names === names) return;
  const chosen = select.value;
  select.replaceChildren(...ids.map((id) => el("option", { value: id, text: id })));
  if (ids.includes(chosen)) select.value = chosen;
  select.dataset.names = names;
}

// Any answer of the query API: lists as tables, records as key/value, the rest as JSON.
function render(data) {
  if (Array.isArray(data)) return [rows(data)];
  if (!data || typeof data !== "object") return [el("pre", { text: fmt(data) })];
  const out = [];
  const scalars = Object.entries(data).filter(([, v]) => v === null || typeof v !== "object");
  if (scalars.length) out.push(table(["", ""], scalars));
  for (const [key, value] of Object.entries(data)) {
    if (value === null || typeof value !== "object") continue;
    out.push(el("h3", { text: key.replaceAll("_", " ") }));
    out.push(Array.isArray(value) ? rows(value)
      : table(["", ""], Object.entries(value).map(([k, v]) => [k, v])));
  }
  return out;
}

function rows(list) {
  if (!list.length) return el("p", { class: "muted", text: "none" });
  if (typeof list[0] !== "object") return el("p", { text: list.map(fmt).join(", ") });
  const headers = [...new Set(list.flatMap((item) => Object.keys(item)))];
  return table(headers, list.map((item) => headers.map((h) => item[h])));
}
