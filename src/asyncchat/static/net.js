// The connection: the WebSocket at /ws, one JSON object of docs/protocol.md per text message;
// hello with resume after a reconnect, and what each server message does to the page.

import { $, LOBBY, BACKOFF_MIN, BACKOFF_MAX, state, key, ident } from "./state.js";
import { attention, badges, line, members, place, roomView, select, system, time, title } from "./view.js";
import { login, scrolled } from "./app.js";

function status(kind, text) {
  const s = $("status");
  s.dataset.state = kind;
  s.textContent = text;
  $("input").disabled = !state.name;
  $("send").disabled = !state.name;
}

export function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}

export function request(obj, then) {
  const id = ident();
  state.requests.set(id, then);
  send({ ...obj, id });
}

export function connect() {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  status(state.everConnected ? "reconnecting" : "connecting", state.everConnected ? "reconnecting…" : "connecting…");
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.addEventListener("open", () => {
    const resume = {};
    for (const r of state.rooms.values()) if (!r.dm && r.joined && r.lastSeq > 0) resume[r.name] = r.lastSeq;
    const hello = { type: "hello", name: state.name, version: 1, rooms: state.wanted, id: "hello" };
    // A registered name's password and a private server's password: kept in memory only.
    if (state.password) hello.password = state.password;
    if (state.serverPassword) hello.server_password = state.serverPassword;
    if (Object.keys(resume).length) {
      hello.resume = resume;
      state.resuming = { rooms: new Set(Object.keys(resume).map(key)), after: {}, missed: 0 };
      for (const [n, seq] of Object.entries(resume)) state.resuming.after[key(n)] = seq;
    }
    state.lastHeard = Date.now();
    send(hello);
  });
  ws.addEventListener("message", (ev) => {
    state.lastHeard = Date.now();
    let f;
    try { f = JSON.parse(ev.data); } catch { return; }
    if (f && typeof f.type === "string") receive(f);
  });
  ws.addEventListener("close", (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    const was = state.online;
    state.online = false;
    if (state.stopped) {
      status("offline", state.stopped);
      return;
    }
    const wait = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** state.attempt) * (0.5 + Math.random() / 2);
    state.attempt++;
    const why = ev.code === 1009 ? " (a message was too large)" : "";
    status("reconnecting", `${was ? "connection lost" : "cannot connect"}${why}: retrying in ${wait.toFixed(1)} s`);
    setTimeout(connect, wait * 1000);
  });
}

function receive(f) {
  switch (f.type) {
    case "welcome": return welcome(f);
    case "message": return message(f);
    case "dm": return dm(f);
    case "ack": return ack(f);
    case "error": return error(f);
    case "joined": return joined(f);
    case "left": return left(f);
    case "renamed": return renamed(f);
    case "history_end": return historyEnd(f);
    case "topic": return topic(f);
    case "away": return away(f);
    case "ping": return send({ type: "pong", ...("data" in f ? { data: f.data } : {}) });
    case "bye": return bye(f);
    default: return reply(f);
  }
}

function reply(f) {
  const then = f.ref !== undefined && state.requests.get(f.ref);
  if (then) {
    state.requests.delete(f.ref);
    then(f);
  }
}

function welcome(f) {
  state.online = true;
  state.everConnected = true;
  state.loginPending = false;
  state.attempt = 0;
  state.name = f.name;
  state.limits = f.limits;
  localStorage.setItem("asyncchat.name", f.name);
  if ($("login").open) $("login").close();
  status("online", `online as ${f.name}`);
  for (const n of f.rooms) roomView(n).joined = true;
  if (f.motd && !state.motdShown) {
    state.motdShown = true;
    system(roomView(f.rooms[0] || LOBBY), `message of the day: ${f.motd}`);
  }
  state.wanted = [...f.rooms];
  select(state.current ?? key(f.rooms[0] || LOBBY));
  // What was sent and not acknowledged goes again, with its id: the server posts it once.
  for (const [id, p] of state.pending) {
    send(p.dm ? { type: "dm", to: p.to, text: p.text, id } : { type: "say", room: p.room, text: p.text, action: p.action || undefined, id });
  }
  if (state.resuming && state.resuming.rooms.size === 0) resumed();
  badges(state.rooms.get(state.current));
}

function resumed() {
  const n = state.resuming.missed;
  state.resuming = null;
  const r = state.rooms.get(state.current);
  if (r) system(r, `back, ${n} missed message${n === 1 ? "" : "s"}`, "gap");
}

function message(f) {
  const r = roomView(f.room);
  if (f.seq && r.seqs.has(f.seq)) return;
  if (f.seq) {
    r.seqs.add(f.seq);
    if (r.oldest === null || f.seq < r.oldest) r.oldest = f.seq;
  }
  const li = line(r, { from: f.from, text: f.text, ts: f.ts, action: f.action, seq: f.seq });
  place(r, li);
  if (f.seq > r.lastSeq) r.lastSeq = f.seq;
  if (state.resuming && f.history && state.resuming.rooms.has(r.key) && f.seq > (state.resuming.after[r.key] ?? 0)) {
    state.resuming.missed++;
  }
  if (!f.history) attention(r, li, f.from, f.text);
}

function historyEnd(f) {
  if (f.ref !== undefined) return reply(f);
  const r = roomView(f.room);
  if (f.reset) {
    r.lastSeq = 0;
    r.seqs.clear();
  }
  if (state.resuming && state.resuming.rooms.has(r.key)) return resumePage(r, f);
  r.more = f.more; // the replay on join: older messages are stored
  if (r.key === state.current) scrolled();
}

// The end of a page of a resume: a large gap comes page after page, then "back, N missed".
function resumePage(r, f) {
  if (f.type === "history_end" && f.more) {
    request({ type: "history", room: r.name, after: r.lastSeq }, (g) => resumePage(r, g));
    return;
  }
  if (f.truncated) system(r, "some missed messages are no longer kept");
  if (!state.resuming) return;
  state.resuming.rooms.delete(r.key);
  if (state.resuming.rooms.size === 0) resumed();
}

function joined(f) {
  const r = roomView(f.room);
  r.members.add(f.name);
  if (f.name === state.name) {
    r.joined = true;
    if (!state.wanted.some((w) => key(w) === r.key)) state.wanted.push(r.name);
    if (f.ref !== undefined) select(r.key);
  } else {
    system(r, `${f.name} joined #${r.name}`);
  }
  if (r.key === state.current) members();
  reply(f);
}

function left(f) {
  const r = roomView(f.room);
  r.members.delete(f.name);
  if (f.name === state.name) {
    r.joined = false;
    state.wanted = state.wanted.filter((w) => key(w) !== r.key);
    system(r, `you left #${r.name}`);
  } else {
    const why = f.reason === "leave" ? "" : ` (${f.reason})`;
    system(r, `${f.name} left #${r.name}${why}`);
  }
  if (r.key === state.current) members();
  reply(f);
}

function renamed(f) {
  if (f.old === state.name) state.name = f.new;
  for (const r of state.rooms.values()) {
    if (r.members.delete(f.old)) {
      r.members.add(f.new);
      system(r, `${f.old} is now known as ${f.new}`);
    }
  }
  if (f.ref !== undefined) {
    localStorage.setItem("asyncchat.name", f.new);
    status("online", `online as ${f.new}`);
  }
  members();
  reply(f);
}

function topic(f) {
  const r = roomView(f.room);
  r.topic = f.text || "";
  if (f.text) system(r, `topic: ${f.text}` + (f.by ? ` (set by ${f.by})` : ""));
  else if (f.ref !== undefined || r.hadTopic) system(r, `#${r.name} has no topic`);
  r.hadTopic = Boolean(f.text);
  if (r.key === state.current) title(r);
  reply(f);
}

function away(f) {
  const was = state.away.get(f.name);
  if (f.message) state.away.set(f.name, f.message);
  else state.away.delete(f.name);
  if (was !== f.message) {
    const who = f.name === state.name ? "you are" : `${f.name} is`;
    const text = f.message ? `${who} away: ${f.message}` : `${who} back`;
    const r = state.rooms.get(state.current);
    if (r) system(r, text);
  }
  members();
  reply(f);
}

function dm(f) {
  const peer = f.from === state.name ? f.to : f.from;
  const r = roomView(peer, true);
  const li = line(r, { from: f.from, text: f.text, ts: f.ts });
  place(r, li);
  attention(r, li, f.from, f.text);
}

function ack(f) {
  const p = state.pending.get(f.ref);
  if (!p) return reply(f);
  state.pending.delete(f.ref);
  const r = p.r;
  if (f.away) system(r, `${r.name} is away: ${f.away}`);
  p.li.classList.remove("pending");
  p.li.querySelector(".state").textContent = "";
  p.li.querySelector(".time").textContent = time(f.ts);
  if (f.seq) {
    if (r.seqs.has(f.seq)) { p.li.remove(); return; }
    r.seqs.add(f.seq);
    p.li.dataset.seq = String(f.seq);
    p.li.remove();
    place(r, p.li);
    if (f.seq > r.lastSeq) r.lastSeq = f.seq;
  }
  p.li.dataset.state = "acked";
}

function error(f) {
  const p = f.ref !== undefined && state.pending.get(f.ref);
  if (p) {
    state.pending.delete(f.ref);
    p.li.classList.remove("pending");
    p.li.classList.add("failed");
    p.li.dataset.state = "failed";
    p.li.querySelector(".state").textContent = `not sent: ${f.message}`;
    return;
  }
  if (f.ref === "hello") {
    // The name or a password is refused (taken, registered, wrong, banned): ask again.
    state.stopped = `not connected: ${f.message}`;
    let why = f.message;
    if (f.code === "auth_failed" && f.retry_after) why += ` (try again in ${Math.ceil(f.retry_after)} s)`;
    if (f.code === "auth_required") $("login-server-row").hidden = false;
    login(why, f.code === "name_reserved" || f.code === "auth_failed" ? "login-password" : null);
    return;
  }
  reply(f);
  const r = state.rooms.get(state.current);
  if (r) system(r, `error: ${f.message}`);
}

function bye(f) {
  if (f.reason === "kicked") state.stopped = `disconnected: ${f.message || f.reason}`;
  const r = state.rooms.get(state.current);
  if (r) system(r, `the server closed the connection: ${f.message || f.reason}`);
}
