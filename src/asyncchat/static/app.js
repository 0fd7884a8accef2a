// asyncchat's chat page: the protocol of docs/protocol.md over the WebSocket at /ws, one JSON
// object per text message. Every string a peer sends is shown with textContent (never as HTML);
// links become <a rel="noopener noreferrer"> only for http(s) URLs.
"use strict";

const $ = (id) => document.getElementById(id);
const LOBBY = "lobby";
const PAGE = 50; // messages fetched per scroll back
const BACKOFF_MIN = 0.5, BACKOFF_MAX = 15; // seconds between reconnection attempts

const state = {
  name: null, // the name the server knows us by
  wanted: [LOBBY], // rooms to be in (sent in hello on each connection)
  rooms: new Map(), // key -> room view (rooms and DMs; a DM's key is "@" + name key)
  current: null,
  ws: null,
  online: false,
  attempt: 0,
  limits: null,
  lastHeard: 0,
  nextId: 1,
  pending: new Map(), // id -> {room, text, action, li, dm}
  requests: new Map(), // id -> what to do with the reply
  resuming: null, // {rooms: Set of keys still replaying, missed: count}
  notify: false,
  everConnected: false,
  away: new Map(), // name -> away message, for those who are away
};

const key = (name) => name.normalize("NFKC").toLowerCase();
const ident = () => "w" + state.nextId++;

// ------------------------------------------------------------------ rooms and their views

function roomView(name, dm = false) {
  const k = dm ? "@" + key(name) : key(name);
  let r = state.rooms.get(k);
  if (r) return r;
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "room";
  const label = document.createElement("span");
  label.className = "label";
  const badge = document.createElement("span");
  badge.className = "badge";
  button.append(label, badge);
  li.append(button);
  const list = document.createElement("ol");
  list.className = "lines";
  list.hidden = true;
  $("messages").append(list);
  r = {
    key: k, name, dm, members: new Set(), seqs: new Set(), lastSeq: 0, oldest: null,
    more: false, loading: false, unread: 0, mentions: 0, joined: !dm,
    list, button, label, badge, li, scroll: null,
  };
  label.textContent = (dm ? "@" : "#") + name;
  button.addEventListener("click", () => select(r.key));
  ($(dm ? "dm-list" : "room-list")).append(li);
  state.rooms.set(k, r);
  return r;
}

function select(k) {
  const r = state.rooms.get(k);
  if (!r) return;
  const box = $("messages");
  const old = state.rooms.get(state.current);
  if (old && old !== r) {
    old.scroll = box.scrollTop;
    old.list.hidden = true;
  }
  state.current = k;
  for (const other of state.rooms.values()) other.button.setAttribute("aria-current", String(other === r));
  r.list.hidden = false;
  r.unread = 0;
  r.mentions = 0;
  badges(r);
  title(r);
  box.scrollTop = r.scroll === null ? box.scrollHeight : r.scroll;
  members();
  $("rooms").classList.remove("open");
  $("toggle-rooms").setAttribute("aria-expanded", "false");
  if (!r.dm && r.joined && state.online) {
    request({ type: "who", room: r.name }, (f) => {
      if (f.type !== "who") return;
      r.members = new Set(f.names);
      for (const [n, msg] of Object.entries(f.away || {})) state.away.set(n, msg);
      members();
    });
  }
  if (!state.mobile) $("input").focus();
  scrolled();
}

function badges(r) {
  r.badge.textContent = r.mentions ? String(r.mentions) : r.unread ? String(r.unread) : "";
  r.badge.classList.toggle("mention", r.mentions > 0);
  r.button.setAttribute(
    "aria-label",
    `${r.dm ? "direct messages with" : "room"} ${r.name}` +
      (r.unread ? `, ${r.unread} unread` : "") + (r.mentions ? `, ${r.mentions} mentions` : ""),
  );
  let total = 0;
  for (const room of state.rooms.values()) total += room.unread;
  document.title = (total ? `(${total}) ` : "") + "asyncchat" + (state.name ? ` — ${state.name}` : "");
}

function members() {
  const r = state.rooms.get(state.current);
  const ul = $("member-list");
  ul.replaceChildren();
  if (!r) return;
  const names = r.dm ? [state.name, r.name] : [...r.members];
  names.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  for (const n of names) {
    const li = document.createElement("li");
    li.textContent = n;
    const msg = state.away.get(n);
    if (msg !== undefined) {
      li.classList.add("away");
      const note = document.createElement("span");
      note.className = "away-note";
      note.textContent = ` away: ${msg}`;
      li.append(note);
    }
    ul.append(li);
  }
}

// ------------------------------------------------------------------ message lines

function time(ts) {
  const d = ts ? new Date(ts * 1000) : new Date();
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Text with its http(s) links made clickable; everything else stays text.
function linkify(text) {
  const span = document.createElement("span");
  span.className = "text";
  span.dir = "auto";
  const re = /\bhttps?:\/\/[^\s<>"']+/g;
  let at = 0;
  for (const m of text.matchAll(re)) {
    let url = m[0].replace(/[.,;:!?)\]]+$/, "");
    span.append(document.createTextNode(text.slice(at, m.index)));
    let ok = false;
    try {
      const u = new URL(url);
      ok = u.protocol === "http:" || u.protocol === "https:";
    } catch { ok = false; }
    if (ok) {
      const a = document.createElement("a");
      a.href = url;
      a.textContent = url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      span.append(a);
    } else {
      span.append(document.createTextNode(url));
    }
    at = m.index + url.length;
  }
  span.append(document.createTextNode(text.slice(at)));
  return span;
}

function mentions(text) {
  if (!state.name) return false;
  const n = state.name.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^\\p{L}\\p{N}_])@?${n}($|[^\\p{L}\\p{N}_])`, "iu").test(text);
}

// One message line: "14:02 alice hi" or "14:02 * alice waves".
function line(r, { from, text, ts, action, seq }) {
  const li = document.createElement("li");
  li.dataset.room = r.key;
  li.dataset.seq = String(seq ?? r.lastSeq + 0.5);
  const t = document.createElement("time");
  t.className = "time";
  t.textContent = time(ts);
  const who = document.createElement("bdi");
  who.className = "from";
  who.textContent = action ? `* ${from}` : from;
  li.append(t, who, linkify(text));
  if (from !== state.name && mentions(text)) li.classList.add("mention");
  return li;
}

function system(r, text, cls = "system") {
  const li = document.createElement("li");
  li.className = cls;
  li.dataset.room = r.key;
  li.dataset.seq = String(r.lastSeq + 0.5);
  li.textContent = text;
  place(r, li);
  return li;
}

// Put li in r's list in seq order (live lines come last: the walk stops at once); a line put
// above what is shown keeps the view still, and a view at the bottom follows new lines.
function place(r, li) {
  const list = r.list;
  const box = $("messages");
  const seq = Number(li.dataset.seq);
  const shown = r.key === state.current;
  const stick = shown && box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const fromBottom = box.scrollHeight - box.scrollTop;
  let before = null;
  for (let n = list.lastElementChild; n; n = n.previousElementSibling) {
    if (Number(n.dataset.seq) <= seq) break;
    before = n;
  }
  list.insertBefore(li, before);
  if (!shown) return;
  if (before === null) {
    if (stick) box.scrollTop = box.scrollHeight;
  } else if (box.scrollTop < 40 || !stick) {
    box.scrollTop = box.scrollHeight - fromBottom;
  }
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

function attention(r, li, from, text) {
  const seen = r.key === state.current && document.visibilityState === "visible";
  const mention = from !== state.name && (r.dm || mentions(text));
  if (!seen) {
    r.unread++;
    if (mention) r.mentions++;
    badges(r);
  }
  if (mention && state.notify && document.visibilityState !== "visible" && "Notification" in window) {
    new Notification(`${from} in ${r.dm ? "a direct message" : "#" + r.name}`, { body: text.slice(0, 200) });
  }
  if (mention && !li.classList.contains("mention")) li.classList.add("mention");
}

// ------------------------------------------------------------------ the connection

function status(kind, text) {
  const s = $("status");
  s.dataset.state = kind;
  s.textContent = text;
  $("input").disabled = !state.name;
  $("send").disabled = !state.name;
}

function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}

function request(obj, then) {
  const id = ident();
  state.requests.set(id, then);
  send({ ...obj, id });
}

function connect() {
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

function title(r) {
  $("room-title").textContent = (r.dm ? "@" : "#") + r.name;
  const t = $("room-topic");
  t.textContent = r.topic || "";
  t.hidden = !r.topic;
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

// ------------------------------------------------------------------ the composer

function submit() {
  const input = $("input");
  const text = input.value;
  if (!text.trim()) return;
  const cmd = text.startsWith("/") && !text.startsWith("//");
  if (cmd && !state.online) return; // a message may wait for the connection; a command not
  input.value = "";
  autosize();
  if (cmd) return command(text);
  say(text.startsWith("//") ? text.slice(1) : text, false);
}

function say(text, action) {
  const r = state.rooms.get(state.current);
  if (!r) return;
  const id = ident();
  const li = line(r, { from: state.name, text, action });
  li.classList.add("pending");
  li.dataset.state = "pending";
  const st = document.createElement("span");
  st.className = "state";
  st.textContent = "sending…";
  li.append(st);
  place(r, li);
  const p = { r, li, text, action, room: r.name, dm: r.dm, to: r.name };
  state.pending.set(id, p);
  send(r.dm ? { type: "dm", to: r.name, text, id } : { type: "say", room: r.name, text, id, ...(action ? { action: true } : {}) });
}

const HELP = [
  "/join ROOM  /leave [ROOM]  /nick NAME  /msg NAME TEXT  /me TEXT",
  "/who [ROOM]  /rooms  /topic [TEXT]  /away [MESSAGE]  /register PASSWORD  /quit  /help",
  "A line starting with // sends a literal /.",
  "Enter sends, Shift+Enter is a new line; Alt+↑/↓ changes room.",
];

function command(text) {
  const [cmd, ...rest] = text.slice(1).split(/\s+/);
  const arg = text.slice(1 + cmd.length).trim();
  const r = state.rooms.get(state.current);
  const here = r && !r.dm ? r.name : LOBBY;
  switch (cmd.toLowerCase()) {
    case "join":
      if (!arg) return system(r, "usage: /join ROOM");
      return request({ type: "join", room: rest[0] }, () => {});
    case "leave":
      return request({ type: "leave", room: rest[0] || here }, () => {});
    case "nick":
      if (!arg) return system(r, "usage: /nick NAME");
      return request({ type: "nick", name: rest[0] }, () => {});
    case "msg": {
      const to = rest[0];
      const body = arg.slice((to || "").length).trim();
      if (!to || !body) return system(r, "usage: /msg NAME TEXT");
      select(roomView(to, true).key);
      return say(body, false);
    }
    case "me":
      if (!arg) return system(r, "usage: /me TEXT");
      return say(arg, true);
    case "who":
      return request({ type: "who", room: rest[0] || here }, (f) => system(r, `#${f.room}: ${f.names.join(", ")}`));
    case "rooms":
      return request({ type: "rooms" }, (f) =>
        system(r, "rooms: " + f.rooms.map((x) => `#${x.name} (${x.members})`).join(", ")));
    case "register":
      if (!arg) return system(r, "usage: /register PASSWORD");
      return request({ type: "register", password: arg }, (f) => {
        if (f.type === "error") return;
        state.password = arg; // a reconnection logs in
        system(r, `${state.name} is registered: log in with this password next time`);
      });
    case "topic":
      if (!r || r.dm) return system(r, "/topic works in a room");
      return request(arg ? { type: "topic", room: r.name, text: arg } : { type: "topic", room: r.name }, () => {});
    case "away":
      return request(arg ? { type: "away", message: arg } : { type: "away" }, () => {});
    case "quit":
      state.stopped = "you left the chat";
      send({ type: "quit" });
      return;
    case "help":
      for (const h of HELP) system(r, h);
      return;
    default:
      return system(r, `unknown command /${cmd} (try /help)`);
  }
}

function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

// ------------------------------------------------------------------ scroll back

function scrolled() {
  const list = $("messages");
  const r = state.rooms.get(state.current);
  if (!r || r.dm || !r.more || r.loading || !state.online) return;
  if (list.scrollTop > 40 && list.scrollHeight > list.clientHeight) return;
  r.loading = true;
  request({ type: "history", room: r.name, before: r.oldest ?? r.lastSeq + 1, limit: PAGE }, (f) => {
    r.loading = false;
    r.more = f.type === "history_end" && f.more;
    if (r.more && r.key === state.current) requestAnimationFrame(scrolled);
  });
}

// ------------------------------------------------------------------ start

function login(problem, field) {
  const dialog = $("login");
  const name = $("login-name");
  name.value = name.value || localStorage.getItem("asyncchat.name") || "";
  $("login-error").textContent = problem || "";
  state.loginPending = true;
  if (!dialog.open) dialog.showModal();
  $(field || "login-name").focus();
}

function start() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("login-name").value.trim();
    if (!name) return;
    const rooms = $("login-rooms").value.split(/[\s,]+/).filter(Boolean);
    state.wanted = rooms.length ? rooms : [LOBBY];
    state.name = name;
    state.password = $("login-password").value;
    state.serverPassword = $("login-server-password").value;
    state.stopped = null;
    state.loginPending = false;
    $("login-error").textContent = "";
    if (state.ws) state.ws.close();
    state.ws = null;
    connect();
  });
  $("login").addEventListener("cancel", (ev) => ev.preventDefault());
  $("composer").addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
  const input = $("input");
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", autosize);
  document.addEventListener("keydown", (ev) => {
    if (!ev.altKey || (ev.key !== "ArrowUp" && ev.key !== "ArrowDown")) return;
    const keys = [...state.rooms.keys()];
    const i = keys.indexOf(state.current);
    if (i < 0) return;
    ev.preventDefault();
    select(keys[(i + (ev.key === "ArrowUp" ? keys.length - 1 : 1)) % keys.length]);
  });
  $("messages").addEventListener("scroll", scrolled);
  document.addEventListener("visibilitychange", () => {
    const r = state.rooms.get(state.current);
    if (r && document.visibilityState === "visible") { r.unread = 0; r.mentions = 0; badges(r); }
  });
  for (const [button, panel] of [["toggle-rooms", "rooms"], ["toggle-members", "members"]]) {
    $(button).addEventListener("click", () => {
      const open = $(panel).classList.toggle("open");
      $(button).setAttribute("aria-expanded", String(open));
    });
  }
  $("notify").addEventListener("click", async () => {
    if (!("Notification" in window)) return;
    if (!state.notify && Notification.permission !== "granted") await Notification.requestPermission();
    state.notify = !state.notify && Notification.permission === "granted";
    $("notify").setAttribute("aria-pressed", String(state.notify));
  });
  state.mobile = matchMedia("(max-width: 700px)").matches;
  // The server pings every ping_interval; silence for longer than that plus ping_timeout
  // means the connection is dead even if the browser has not noticed.
  setInterval(() => {
    const l = state.limits;
    if (state.ws && state.online && l && Date.now() - state.lastHeard > (l.ping_interval + l.ping_timeout) * 1000) {
      state.ws.close();
    }
  }, 5000);
  login();
}

start();
