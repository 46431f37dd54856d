#!/usr/bin/python3
"""An h2c app that takes every request and never answers, for the e2e tests of what
Sluice itself does while an app is silent (Debian's python3-h2).

  h2_sink.py PORT

Prints, one line each: `request PATH grpc-timeout=VALUE` (`-` when absent) when a
request's head arrives, and `reset PATH CODE` when the peer resets that stream.
"""
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events


def serve(sock):
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
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                print("reset", paths.get(event.stream_id, "?"), int(event.error_code), flush=True)
        sock.sendall(conn.data_to_send())


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(64)
    print("h2 sink listening on", sys.argv[1], flush=True)
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
