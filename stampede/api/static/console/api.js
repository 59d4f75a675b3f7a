// The admin API as the console uses it: the token lives in sessionStorage only.
const KEY = "stampede.console.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// A JSON call with the signed-in token; refusals become ApiError with the API's message.
export async function call(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${token.get()}`, ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(response.status, err.code || "error", err.message || `HTTP ${response.status}`);
  }
  return data;
}

// A download (export) with the token: fetched, then handed to the browser as a file.
export async function download(path, filename) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token.get()}` } });
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error.message; } catch { /* not JSON */ }
    throw new ApiError(response.status, "export", message);
  }
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  return blob.size;
}

export const enc = encodeURIComponent;

// GET /admin/v1/campaigns answers bare ids or summaries ({id, name, state, ...}): either.
export function campaignIds(list) {
  return ((list && list.campaigns) || []).map((c) => (typeof c === "string" ? c : c.id));
}
