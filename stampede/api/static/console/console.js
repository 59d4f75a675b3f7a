// The console's entry point: sign-in, tabs, and the live feed that drives every panel.
import { call, campaignIds, token } from "./api.js";
import { renderCampaigns } from "./campaigns.js";
import { renderDrops } from "./drops.js";
import { setExportCampaigns, setUpLookups } from "./lookup.js";
import { renderSystem } from "./system.js";

let me = null;
let source = null;
let retry = null;

function status(text) { document.getElementById("live-status").textContent = text; }

async function signIn(value) {
  token.set(value);
  try {
    me = await call("GET", "/admin/v1/me");
  } catch (err) {
    token.clear();
    document.getElementById("sign-in-error").textContent = err.message;
    return;
  }
  document.getElementById("sign-in").hidden = true;
  document.getElementById("console").hidden = false;
  document.getElementById("sign-out").hidden = false;
  const who = document.getElementById("who");
  who.hidden = false;
  who.textContent = `${me.name} (${me.role})`;
  document.getElementById("read-only").hidden = me.role === "operator";
  call("GET", "/admin/v1/campaigns").then((list) => setExportCampaigns(campaignIds(list)))
    .catch(() => {});
  connect();
}

// EventSource cannot send the token: a short-lived ticket from an authenticated POST opens it.
async function connect() {
  clearTimeout(retry);
  if (source) source.close();
  let ticket;
  try {
    ticket = (await call("POST", "/admin/v1/live/ticket")).ticket;
  } catch (err) {
    status(`live feed: ${err.message}`);
    if (err.status === 401) { signOut(); return; }
    retry = setTimeout(connect, 2000);
    return;
  }
  source = new EventSource(`/admin/v1/live?ticket=${encodeURIComponent(ticket)}`);
  source.addEventListener("open", () => status("live"));
  source.addEventListener("state", (event) => render(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    status("reconnecting…");
    // A refused reconnect (its ticket lapsed) closes the source for good: get a new ticket.
    if (source.readyState === EventSource.CLOSED) retry = setTimeout(connect, 1000);
  });
}

function render(state) {
  const canAct = me && me.role === "operator";
  renderCampaigns(state, canAct);
  renderDrops(state);
  renderSystem(state);
  setExportCampaigns(state.campaigns.map((c) => c.id));
  status(`live · ${new Date(state.at_ms).toLocaleTimeString()}`);
}

function signOut() {
  token.clear();
  if (source) source.close();
  location.reload();
}

function tabs() {
  for (const button of document.querySelectorAll("nav [data-tab]")) {
    button.addEventListener("click", () => {
      for (const other of document.querySelectorAll("nav [data-tab]")) {
        other.classList.toggle("active", other === button);
        document.getElementById(`tab-${other.dataset.tab}`).hidden = other !== button;
      }
    });
  }
}

document.getElementById("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  document.getElementById("sign-in-error").textContent = "";
  signIn(document.getElementById("token").value.trim());
});
document.getElementById("sign-out").addEventListener("click", signOut);
tabs();
setUpLookups();
if (token.get()) signIn(token.get());
