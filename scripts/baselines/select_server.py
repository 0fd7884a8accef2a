#!/usr/bin/env python3
"""The textbook ``select`` chat server, as course material writes it (a benchmark baseline).

Protocol: every frame is a 10-byte ASCII length header (the length left-aligned, padded with
spaces: ``f"{len(msg):<10}"``) followed by that many bytes. A client's first frame is its
username; every later frame is a message, which the server relays to every *other* client as two
frames, the sender's username frame and then the message frame, each written with its own
``sendall`` per client. Nothing is ever sent back to the sender.

Written the way the classic tutorials do it: one process, one thread, blocking sockets,
``select.select`` over a list of every socket, and the whole broadcast done inline, so one client
that stops reading stalls everybody. Two departures, both needed for the server to survive a
pipelined benchmark: reads loop until the announced number of bytes has arrived (``recv`` may
return less), and a client whose socket fails during a broadcast is dropped instead of crashing
the server. The per-message ``print`` of the tutorials is left out (it would measure the
terminal). ``select`` cannot watch a descriptor numbered ``FD_SETSIZE`` (1,024) or above: that
is the textbook's connection limit, and this server dies with ``ValueError`` when it is passed.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket

HEADER_LENGTH = 10


def receive_exactly(client_socket: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = client_socket.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive_message(client_socket: socket.socket) -> dict[str, bytes] | None:
    try:
        message_header = receive_exactly(client_socket, HEADER_LENGTH)
        if not message_header:
            return None
        message_length = int(message_header.decode("utf-8").strip())
        data = receive_exactly(client_socket, message_length)
        if data is None:
            return None
        return {"header": message_header, "data": data}
    except (OSError, ValueError):
        return None


def serve(host: str, port: int) -> None:
    server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server_socket.bind((host, port))
    server_socket.listen()

    sockets_list = [server_socket]
    clients: dict[socket.socket, dict[str, bytes]] = {}
    print(f"Listening for connections on {host}:{port}...", flush=True)

    def drop(client_socket: socket.socket) -> None:
        if client_socket in sockets_list:
            sockets_list.remove(client_socket)
        clients.pop(client_socket, None)
        client_socket.close()

    while True:
        read_sockets, _, exception_sockets = select.select(sockets_list, [], sockets_list)
        for notified_socket in read_sockets:
            if notified_socket is server_socket:
                client_socket, _client_address = server_socket.accept()
                user = receive_message(client_socket)
                if user is None:
                    client_socket.close()
                    continue
                sockets_list.append(client_socket)
                clients[client_socket] = user
            else:
                if notified_socket not in clients:
                    continue  # dropped earlier in this round
                message = receive_message(notified_socket)
                if message is None:
                    drop(notified_socket)
                    continue
                user = clients[notified_socket]
                user_frame = user["header"] + user["data"]
                message_frame = message["header"] + message["data"]
                dead = []
                for client_socket in clients:
                    if client_socket is not notified_socket:
                        try:
                            client_socket.sendall(user_frame)
                            client_socket.sendall(message_frame)
                        except OSError:
                            dead.append(client_socket)
                for client_socket in dead:
                    drop(client_socket)
        for notified_socket in exception_sockets:
            drop(notified_socket)


def main() -> None:
    parser = argparse.ArgumentParser(description="Textbook select() chat server (benchmark "
                                     "baseline): 10-byte ASCII length headers, username first.")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=1234, help="TCP port (default: %(default)s)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.port)


if __name__ == "__main__":
    main()
