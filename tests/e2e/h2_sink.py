#!/usr/bin/python3
"""An h2c app that takes every request and never answers, for the e2e tests of what
Sluice itself does while an app is silent (Debian's python3-h2).

  h2_sink.py PORT [--as-expiring-queue-proxy]

Prints, one line each: `request PATH grpc-timeout=VALUE` (`-` when absent) when a
request's head arrives, and `reset PATH CODE` when the peer resets that stream.

--as-expiring-queue-proxy plays a queue-proxy whose copy of every call's deadline has
just passed: it passes the activator's HTTP/1 readiness probe (200 "queue") and answers
each call at once the way Sluice's queue-proxy does then (Trailers-Only,
grpc-status 4, Sluice-Error: grpc_deadline), so a test can make that answer reach the
activator before the activator's own copy of the deadline passes.
"""
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events


def answer_probe(sock):
    """The activator's probe: HTTP/1, one request, Connection: close."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            return
        data += more
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nqueue")
    sock.close()


def serve(sock, expiring):
    if expiring and sock.recv(3, socket.MSG_PEEK | socket.MSG_WAITALL) == b"GET":
        answer_probe(sock)
        return
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    paths = {}
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = {k.decode(): v.decode() for k, v in event.headers}
                paths[event.stream_id] = headers.get(":path", "?")
                print("request", paths[event.stream_id],
                      "grpc-timeout=" + headers.get("grpc-timeout", "-"), flush=True)
                if expiring:
                    conn.send_headers(event.stream_id, [
                        (":status", "200"), ("content-type", "application/grpc"),
                        ("grpc-status", "4"), ("sluice-error", "grpc_deadline"),
                        ("grpc-message", "the call's deadline passed at the queue-proxy")],
                        end_stream=True)
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                print("reset", paths.get(event.stream_id, "?"), int(event.error_code), flush=True)
        sock.sendall(conn.data_to_send())


def main():
    expiring = "--as-expiring-queue-proxy" in sys.argv[2:]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(64)
    print("h2 sink listening on", sys.argv[1], flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock, expiring), daemon=True).start()


if __name__ == "__main__":
    main()
