// The chat page's views: the rooms and their lists of lines, the members, the badges. Every
// string a peer sends goes in with textContent (never as HTML); links become
// <a rel="noopener noreferrer"> only for http(s) URLs.

import { $, state, key } from "./state.js";
import { request } from "./net.js";
import { scrolled } from "./app.js";

export function roomView(name, dm = false) {
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

export function select(k) {
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

export function badges(r) {
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

export function members() {
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

export function title(r) {
  $("room-title").textContent = (r.dm ? "@" : "#") + r.name;
  const t = $("room-topic");
  t.textContent = r.topic || "";
  t.hidden = !r.topic;
}

export function time(ts) {
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
export function line(r, { from, text, ts, action, seq }) {
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

export function system(r, text, cls = "system") {
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
export function place(r, li) {
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

export function attention(r, li, from, text) {
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
