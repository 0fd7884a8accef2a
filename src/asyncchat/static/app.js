// asyncchat's chat page: the login form, the composer and its slash commands, the scroll back,
// and the start. See view.js (what is shown) and net.js (the connection).

import { $, LOBBY, PAGE, state, ident } from "./state.js";
import { badges, line, place, roomView, select, system } from "./view.js";
import { connect, request, send } from "./net.js";

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

export function scrolled() {
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

export function login(problem, field) {
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
