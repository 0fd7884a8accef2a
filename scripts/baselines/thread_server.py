#!/usr/bin/env python3
"""The textbook thread-per-client chat server, as course material writes it (a benchmark
baseline).

Protocol: every frame is a 10-byte ASCII length header (the length left-aligned, padded with
spaces: ``f"{len(msg):<10}"``) followed by that many bytes. A client's first frame is its
username; every later frame is a message, which the server relays to every *other* client as two
frames, the sender's username frame and then the message frame, each written with its own
``sendall`` per client. Nothing is ever sent back to the sender.

Written the way the classic tutorials do it: the main thread accepts, one thread per client reads
that client with blocking ``recv``, and a broadcast walks the shared client list under a lock
(held for the whole broadcast, so broadcasts are serialised and one client that stops reading
stalls every sender). Two departures, both needed for the server to survive a pipelined
benchmark: reads loop until the announced number of bytes has arrived (``recv`` may return less),
and a client whose socket fails during a broadcast is dropped. The per-message ``print`` of the
tutorials is left out (it would measure the terminal).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading

HEADER_LENGTH = 10

clients: list[tuple[socket.socket, bytes]] = []
clients_lock = threading.Lock()


def receive_exactly(client_socket: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = client_socket.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive_message(client_socket: socket.socket) -> bytes | None:
    """One frame, header included, or None when the client is gone."""
    try:
        header = receive_exactly(client_socket, HEADER_LENGTH)
        if not header:
            return None
        length = int(header.decode("utf-8").strip())
        data = receive_exactly(client_socket, length)
        if data is None:
            return None
        return header + data
    except (OSError, ValueError):
        return None


def remove(client_socket: socket.socket) -> None:
    with clients_lock:
        for i, (sock, _user) in enumerate(clients):
            if sock is client_socket:
                del clients[i]
                break
    client_socket.close()


def broadcast(sender: socket.socket, user_frame: bytes, message_frame: bytes) -> None:
    dead = []
    with clients_lock:
        for client_socket, _user in clients:
            if client_socket is not sender:
                try:
                    client_socket.sendall(user_frame)
                    client_socket.sendall(message_frame)
                except OSError:
                    dead.append(client_socket)
    for client_socket in dead:
        remove(client_socket)


def handle_client(client_socket: socket.socket) -> None:
    user_frame = receive_message(client_socket)
    if user_frame is None:
        client_socket.close()
        return
    with clients_lock:
        clients.append((client_socket, user_frame))
    while True:
        message_frame = receive_message(client_socket)
        if message_frame is None:
            remove(client_socket)
            return
        broadcast(client_socket, user_frame, message_frame)


def serve(host: str, port: int) -> None:
    server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server_socket.bind((host, port))
    server_socket.listen()
    print(f"Listening for connections on {host}:{port}...", flush=True)
    while True:
        client_socket, _client_address = server_socket.accept()
        thread = threading.Thread(target=handle_client, args=(client_socket,), daemon=True)
        thread.start()


def main() -> None:
    parser = argparse.ArgumentParser(description="Textbook thread-per-client chat server "
                                     "(benchmark baseline): 10-byte ASCII length headers, "
                                     "username first.")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=1234, help="TCP port (default: %(default)s)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.port)


if __name__ == "__main__":
    main()
