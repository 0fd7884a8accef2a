// What every part of the chat page shares: the state of the session and a few helpers.

export const $ = (id) => document.getElementById(id);
export const LOBBY = "lobby";
export const PAGE = 50; // messages fetched per scroll back
export const BACKOFF_MIN = 0.5, BACKOFF_MAX = 15; // seconds between reconnection attempts

export const state = {
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

export const key = (name) => name.normalize("NFKC").toLowerCase();
export const ident = () => "w" + state.nextId++;

