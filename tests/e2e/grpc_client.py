"""A gRPC client for the end-to-end tests (Debian's python3-grpcio; no generated code).

  grpc_client.py TARGET AUTHORITY METHOD [--mode M] [--deadline S] [--payload TEXT]
                 [--size BYTES] [--metadata k=v ...] [--cancel-after S]

Calls METHOD ("/pkg.Service/Method") with raw bytes as messages, the `:authority` set
to AUTHORITY (Sluice routes by it), and prints:
  unary:   "ok <reply>" (and "trailer k=v" lines), or "error <CODE_NAME> <details>"
  stream:  one "msg <ms since the call started> <message>" line per message, then
           "end OK" or "error <CODE_NAME> <details>"
  client:  sends --payload split in 4 messages; prints the reply like unary
  bidi:    sends --payload's words one by one, each after the previous answer; prints
           "msg ..." per answer
--size BYTES sends a message of that many bytes (and prints the reply's length).
--cancel-after S cancels the call S seconds in (prints "cancelled").
  bulk:    --count messages of --size bytes each way on one bidirectional call, answers
           read one per --read-delay seconds; prints "received BYTES bytes in MS ms".
  load:    --count unary calls, --concurrency at a time, on one channel; prints one
           "<CODE_NAME> <n>" line per status seen, then "first <details>" of each failure
           kind, then a "trailer k=v" line per call for each key --show-trailer names.
"""
import argparse
import sys
import threading
import time

import grpc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("authority")
    p.add_argument("method")
    p.add_argument("--mode", default="unary",
                   choices=["unary", "stream", "client", "bidi", "load", "bulk"])
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--deadline", type=float, default=30.0)
    p.add_argument("--payload", default="ping")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--metadata", nargs="*", default=[])
    p.add_argument("--cancel-after", type=float, default=0)
    p.add_argument("--read-delay", type=float, default=0)
    p.add_argument("--show-trailer", nargs="*", default=[])
    a = p.parse_args()
    options = [("grpc.default_authority", a.authority), ("grpc.enable_retries", 0),
               ("grpc.max_receive_message_length", 100 << 20),
               ("grpc.max_send_message_length", 100 << 20)]
    metadata = [tuple(kv.split("=", 1)) for kv in a.metadata]
    payload = b"x" * a.size if a.size else a.payload.encode()
    started = time.time()

    def ms():
        return int((time.time() - started) * 1000)

    with grpc.insecure_channel(a.target, options=options) as channel:
        try:
            if a.mode == "unary":
                call = channel.unary_unary(a.method)
                fut = call.future(payload, timeout=a.deadline, metadata=metadata)
                if a.cancel_after:
                    time.sleep(a.cancel_after)
                    fut.cancel()
                    print("cancelled")
                    return
                reply = fut.result()
                print("ok", len(reply) if a.size else reply.decode(errors="replace"))
                for k, v in fut.trailing_metadata() or ():
                    print("trailer %s=%s" % (k, v))
            elif a.mode == "stream":
                call = channel.unary_stream(a.method)
                it = call(payload, timeout=a.deadline, metadata=metadata)
                for m in it:
                    print("msg", ms(), m.decode(errors="replace"), flush=True)
                print("end OK")
            elif a.mode == "client":
                call = channel.stream_unary(a.method)
                n = max(1, len(payload) // 4)
                parts = [payload[i:i + n] for i in range(0, len(payload), n)]
                print("ok", call(iter(parts), timeout=a.deadline, metadata=metadata).decode())
            elif a.mode == "load":
                call = channel.unary_unary(a.method)
                pending = [call.future(payload, timeout=a.deadline, metadata=metadata)
                           for _ in range(min(a.concurrency, a.count))]
                started_calls = len(pending)
                counts, first, shown = {}, {}, []
                while pending:
                    fut = pending.pop(0)
                    try:
                        fut.result()
                        code = "OK"
                        shown += ["%s=%s" % kv for kv in fut.trailing_metadata() or ()
                                  if kv[0] in a.show_trailer]
                    except grpc.RpcError as e:
                        code = e.code().name
                        first.setdefault(code, e.details())
                    counts[code] = counts.get(code, 0) + 1
                    if started_calls < a.count:
                        pending.append(call.future(payload, timeout=a.deadline, metadata=metadata))
                        started_calls += 1
                for code, n in sorted(counts.items()):
                    print(code, n)
                for code, details in sorted(first.items()):
                    print("first", code, details)
                for kv in shown:
                    print("trailer", kv)
            elif a.mode == "bulk":
                # --count messages of --size bytes each way, sent as fast as flow control
                # lets them go, answers read one per --read-delay seconds (a slow reader).
                call = channel.stream_stream(a.method)
                received = 0
                for m in call((payload for _ in range(a.count)), timeout=a.deadline,
                              metadata=metadata):
                    received += len(m)
                    if a.read_delay:
                        time.sleep(a.read_delay)
                print("received", received, "bytes in", ms(), "ms")
            else:
                call = channel.stream_stream(a.method)
                words = a.payload.split()
                ready = threading.Semaphore(1)

                def gen():
                    for w in words:
                        ready.acquire()
                        yield w.encode()

                for m in call(gen(), timeout=a.deadline, metadata=metadata):
                    print("msg", ms(), m.decode(errors="replace"), flush=True)
                    ready.release()
                print("end OK")
        except grpc.RpcError as e:
            print("error", e.code().name, e.details())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
