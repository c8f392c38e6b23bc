// The replguard status page: reads /status and /events every REFRESH_MS and redraws.
// Everything from the server is inserted as text (textContent), never parsed as HTML:
// reasons can carry server error messages.
"use strict";

const REFRESH_MS = 1500;
const STATUS = "/status";
const EVENTS = "/events";
// Lag graphs keep this much client-side history (the server sends its last polls).
const KEEP_MS = 10 * 60 * 1000;
const BAD_EVENTS = new Set(["unhealthy", "source_lost", "memory_void", "maintenance_on",
  "group_degraded",
  "galera_degraded", "semi_sync_off"]);

// Per instance: [{t (ms since epoch, client clock), lag (s or null)}], oldest first.
const history = new Map();
// Successful redraws of this document, exposed as <body data-refreshes> for tests.
let refreshes = 0;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function secs(s) {
  if (s === null || s === undefined) return "NULL";
  if (s < 10) return (Math.round(s * 10) / 10) + "s";
  if (s < 120) return Math.round(s) + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  return Math.round(s / 3600) + "h";
}

// Times in UTC, zone shown, as /events and the logs write them.
function clock(rfc3339) {
  const d = new Date(rfc3339);
  return isNaN(d) ? rfc3339 : d.toISOString().slice(11, 19) + " UTC";
}

function role(inst) {
  if (inst.error) return ["unreachable", inst.error.message || inst.error.kind];
  const s = inst.state;
  if (!s) return ["no sample yet", null];
  const what = s.flavor + " " + s.version + ", server_id " + s.server_id + semiSync(s.semi_sync);
  if (s.group) {
    const g = s.group;
    const online = g.members.filter((m) => m.state === "ONLINE").length;
    return ["group " + (g.role || "member") + (g.state === "ONLINE" ? "" : " (" + g.state + ")"),
      what + "; " + online + " of " + g.members.length + " members online, applier queue " +
      (g.applier_queue === null || g.applier_queue === undefined ? "?" : g.applier_queue)];
  }
  if (s.galera) {
    const g = s.galera;
    const where = g.cluster_status === "Primary" ? "" : " (" + g.cluster_status + ")";
    return ["galera " + g.local_state_comment + where, what + "; " + g.cluster_size +
      " nodes in its component, recv queue " + g.recv_queue];
  }
  if (s.channels.length > 0) {
    const r = s.channels.length > 1 ? "replica ×" + s.channels.length : "replica";
    return [s.read_only ? r : r + " (writable!)", what];
  }
  return [s.read_only ? "read-only, no replication" : "primary", what];
}

// A server's semi-sync, in a few words (empty without semi-sync).
function semiSync(ss) {
  if (!ss) return "";
  if (ss.error) return "; semi-sync unreadable";
  const parts = [];
  if (ss.source_enabled) {
    parts.push(ss.source_status ? "semi-sync " + (ss.wait_point || "") + ", " +
      (ss.clients === null || ss.clients === undefined ? "?" : ss.clients) + " acking" +
      (ss.wait_sessions ? ", " + ss.wait_sessions + " waiting" : "")
      : "semi-sync OFF (asynchronous)");
  }
  if (ss.replica_enabled) parts.push(ss.replica_status ? "acking replica" : "replica side not acking");
  return parts.length ? "; " + parts.join(", ") : "";
}

function worstLag(inst) {
  const chans = inst.state ? inst.state.channels : [];
  if (chans.length === 0) return undefined;
  let worst = 0;
  for (const c of chans) {
    if (c.lag_s === null || c.lag_s === undefined) return null;
    worst = Math.max(worst, c.lag_s);
  }
  return worst;
}

// Merges the server's recent lag history (ages relative to now) into the client-side one.
function remember(inst, now) {
  const list = history.get(inst.name) || [];
  const last = list.length ? list[list.length - 1].t : -Infinity;
  const pts = inst.lag_history || [];
  // Two polls are at least ~100 ms apart; half of that absorbs request timing jitter.
  for (const p of pts) {
    const t = now - p.ago_ms;
    if (t > last + 50) list.push({ t, lag: p.lag_s });
  }
  while (list.length && list[0].t < now - KEEP_MS) list.shift();
  history.set(inst.name, list);
  return list;
}

function sparkline(list, now) {
  const W = 180, H = 36;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  if (list.length === 0) return [svg, "no history"];
  const t0 = Math.min(list[0].t, now - 60 * 1000);
  const span = Math.max(now - t0, 1);
  let max = 1;
  for (const p of list) if (p.lag !== null) max = Math.max(max, p.lag);
  const x = (t) => ((t - t0) / span) * (W - 2) + 1;
  const y = (lag) => H - 2 - (lag / max) * (H - 4);
  let seg = [];
  const flush = () => {
    if (seg.length) {
      const pl = document.createElementNS(NS, "polyline");
      pl.setAttribute("points", seg.join(" "));
      svg.append(pl);
    }
    seg = [];
  };
  for (const p of list) {
    if (p.lag === null) {
      flush();
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("class", "unknown");
      r.setAttribute("x", x(p.t) - 1);
      r.setAttribute("y", 0);
      r.setAttribute("width", 2);
      r.setAttribute("height", H);
      svg.append(r);
    } else {
      seg.push(x(p.t).toFixed(1) + "," + y(p.lag).toFixed(1));
    }
  }
  flush();
  const mins = Math.max(1, Math.round(span / 60000));
  return [svg, "max " + secs(max) + " over " + mins + " min; red: lag unknown"];
}

function verdictItem(v, configured) {
  const why = v.failing || v.reason || "failing";
  const li = el("li", { class: "verdict " + (v.healthy ? "ok" : "fail") +
                               (configured ? " configured" : ""), "data-policy": v.policy },
    el("span", { class: "mark" }, v.healthy ? "✓ " : "✗ "),
    v.policy,
    v.healthy ? null : el("span", { class: "why" }, " — " + why));
  if (!v.healthy) li.title = why;
  return li;
}

// The configured policy's verdict first and in full; the others on demand (a healthy primary
// fails the replica policies by design: that is not news for the person on call).
function verdicts(inst) {
  const own = inst.verdicts.find((v) => v.policy === inst.policy);
  const others = inst.verdicts.filter((v) => v.policy !== inst.policy);
  const box = el("div");
  if (own) box.append(el("ul", { class: "verdicts own" }, verdictItem(own, true)));
  if (others.length) {
    const failing = others.filter((v) => !v.healthy).length;
    box.append(el("details", { class: "others" },
      el("summary", { class: "muted" }, others.length + " other policies (" +
        (others.length - failing) + " pass, " + failing + " fail)"),
      el("ul", { class: "verdicts" }, ...others.map((v) => verdictItem(v, false)))));
  }
  return box;
}

function source(inst) {
  const box = el("div");
  const chans = inst.state ? inst.state.channels : [];
  if (!inst.state) return inst.error ? el("span", { class: "muted" }, "unknown") : box;
  if (chans.length === 0) return el("span", { class: "muted" }, "—");
  for (const c of chans) {
    const label = c.name ? "[" + c.name + "] " : "";
    const host = c.source_host + ":" + c.source_port;
    if (c.io_thread === "Yes") {
      box.append(el("div", {}, label + "connected to " + host));
      continue;
    }
    const seen = (inst.io_last_connected || []).find((s) => s.channel === c.name);
    const line = seen
      ? "lost since " + clock(seen.at) + " (" + secs(seen.ago_ms / 1000) + " ago), last lag " +
        secs(seen.lag_s)
      : "IO thread " + c.io_thread + ", never seen connected";
    box.append(el("div", { class: "lost" }, label + line));
    if (c.last_io_errno) {
      box.append(el("div", { class: "muted" }, c.last_io_errno + " " + c.last_io_error));
    }
  }
  return box;
}

function maintenance(inst) {
  const v = inst.verdicts.find((v) => v.reason && v.reason.startsWith("maintenance"));
  if (!v) return el("span", { class: "muted" }, "off");
  return el("span", { class: "badge wait" }, "on" + v.reason.slice("maintenance".length));
}

function row(inst, now) {
  const own = inst.verdicts.find((v) => v.policy === inst.policy);
  const healthy = own ? own.healthy : false;
  const [r, detail] = role(inst);
  const lag = worstLag(inst);
  const points = remember(inst, now);
  // A server that is not a replica has no lag to draw (its history is all "unknown").
  const graph = lag === undefined ? [el("span", { class: "muted" }, "not a replica")]
    : sparkline(points, now).map((x, i) => i ? el("div", { class: "muted" }, x) : x);
  const age = inst.sample_age_ms === null ? "no sample" : "sample " + secs(inst.sample_age_ms / 1000) + " old";
  return el("tr", { class: healthy ? "ok" : "fail", "data-instance": inst.name,
                    "data-healthy": String(healthy) },
    el("td", {}, el("div", { class: "name" }, inst.name),
      el("div", { class: "muted" }, inst.address), el("div", { class: "muted" }, age)),
    el("td", {}, el("div", {}, r), detail ? el("div", { class: "muted" }, detail) : null),
    el("td", {}, verdicts(inst)),
    el("td", {}, lag === undefined ? el("span", { class: "muted" }, "—")
      : el("span", { class: "lag" + (lag === null ? " null" : "") }, secs(lag))),
    el("td", {}, ...graph),
    el("td", {}, source(inst)),
    el("td", {}, maintenance(inst)));
}

// Each [[pool]]: how many pass, how many serve, who is admitted as degraded.
function drawPools(pools) {
  const box = document.getElementById("pools");
  box.hidden = !pools || pools.length === 0;
  if (box.hidden) return;
  document.getElementById("pool-list").replaceChildren(...pools.map((p) => {
    const degraded = p.degraded.map((d) => d.instance + " (lag " + secs(d.lag_s) + ")");
    const short = p.serving < p.min_serving;
    return el("li", { class: short ? "short" : degraded.length ? "degraded" : "",
                      "data-pool": p.name },
      p.name + ": " + p.healthy + " of " + p.members.length + " healthy, " + p.serving +
      " serving (min_serving " + p.min_serving + ")" +
      (degraded.length ? "; admitted as degraded: " + degraded.join(", ") : ""));
  }));
}

function eventItem(e) {
  const what = [e.kind.replace("_", " "), e.policy, e.channel ? "[" + e.channel + "]" : null,
    e.check].filter((x) => x).join(" ");
  return el("li", { class: BAD_EVENTS.has(e.kind) ? "bad" : "", "data-kind": e.kind },
    clock(e.at) + "  " + e.instance + "  " + what + ": " + e.reason);
}

// One incident, one line per change that matters: the configured policy's transitions and the
// server's own (source lost/found, maintenance, memory); other policies' on demand.
function drawEvents(list, configured) {
  const recent = list.slice(-50).reverse();
  const matters = (e) => !e.policy || configured.get(e.instance) === e.policy;
  const main = recent.filter(matters).slice(0, 20).map(eventItem);
  document.getElementById("events").replaceChildren(
    ...(main.length ? main : [el("li", { class: "muted" }, "none yet")]));
  const rest = recent.filter((e) => !matters(e)).slice(0, 30);
  const box = document.getElementById("other-events");
  box.replaceChildren(el("summary", { class: "muted" },
      rest.length + " transitions of other policies"),
    el("ol", { class: "events" }, ...rest.map(eventItem)));
  box.hidden = rest.length === 0;
}

function setConn(ok, text) {
  const b = document.getElementById("conn");
  b.className = "badge " + (ok ? "ok" : "fail");
  b.textContent = text;
}

// At fleet size the page asks for the failing first and at most SHOWN rows, filtered by
// name and failure on the guard: the document it reads stays small whatever the fleet.
const SHOWN = 200;
let timer;

function statusQuery() {
  const q = new URLSearchParams({ order: "failing", limit: String(SHOWN) });
  const name = document.getElementById("filter-name").value.trim();
  if (name) q.set("name", name);
  if (document.getElementById("filter-failing").checked) q.set("failing", "1");
  return STATUS + "?" + q.toString();
}

async function refresh() {
  try {
    const [st, ev] = await Promise.all([
      fetch(statusQuery(), { cache: "no-store" }),
      fetch(EVENTS, { cache: "no-store" }),
    ]);
    if (!st.ok) throw new Error(STATUS + " " + st.status);
    const doc = await st.json();
    const now = Date.now();
    document.getElementById("rows").replaceChildren(...doc.instances.map((i) => row(i, now)));
    drawPools(doc.pools);
    const configured = new Map(doc.instances.map((i) => [i.name, i.policy]));
    if (ev.ok) drawEvents((await ev.json()).events, configured);
    const failing = doc.summary ? doc.summary.failing : doc.instances.filter((i) =>
      !(i.verdicts.find((v) => v.policy === i.policy) || {}).healthy).length;
    if (doc.summary) {
      document.getElementById("shown").textContent = "showing " + doc.summary.shown + " of " +
        doc.summary.instances + " (" + doc.summary.failing + " failing, listed first)";
    }
    setConn(true, failing ? failing + " failing" : "all healthy");
    if (failing) document.getElementById("conn").className = "badge fail";
    document.getElementById("updated").textContent =
      "updated " + new Date(now).toISOString().slice(11, 19) + " UTC";
    document.body.dataset.refreshes = String(++refreshes);
    // For the test at 1000 px: how wide the page wants to be.
    document.body.dataset.scrollWidth = String(document.documentElement.scrollWidth);
  } catch (err) {
    setConn(false, "replguard unreachable: " + err.message);
  } finally {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

// The filter can come with the address (/ui?filter=db2&failing=1), for a link to send.
{
  const q = new URLSearchParams(location.search);
  document.getElementById("filter-name").value = q.get("filter") || "";
  document.getElementById("filter-failing").checked = q.get("failing") === "1";
}
for (const id of ["filter-name", "filter-failing"]) {
  document.getElementById(id).addEventListener("change", () => { clearTimeout(timer); refresh(); });
}
refresh();
