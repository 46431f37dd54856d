"""A gRPC server for the end-to-end tests (Debian's python3-grpcio; no generated code).

  grpc_app.py [PORT]      (default: $PORT, as `sluice run` and Knative give it)

Methods (messages are raw bytes):
  /echo.Echo/Say       unary: answers the request; metadata "x-status: CODE" makes it fail
                       with that code and "x-sleep: S" makes it wait S seconds first;
                       trailing metadata "x-echo-len" = request length, and
                       "x-time-left-ms" = what the call's deadline left when it arrived;
                       "x-max-inflight" answers the most Say calls ever running at once.
  /echo.Echo/Count     server streaming: request "N INTERVAL_MS" yields N messages "i".
  /echo.Echo/Sum       client streaming: answers the total length of what it received.
  /echo.Echo/Chat      bidirectional: answers each message at once, upper-cased.
A cancelled call prints "cancelled <method>" (the tests look for it).
"""
import os
import sys
import threading
import time
from concurrent import futures

import grpc


INFLIGHT = {"now": 0, "most": 0}
INFLIGHT_LOCK = threading.Lock()


def say(request, context):
    md = dict(context.invocation_metadata())
    if "x-max-inflight" in md:
        return str(INFLIGHT["most"]).encode()
    with INFLIGHT_LOCK:
        INFLIGHT["now"] += 1
        INFLIGHT["most"] = max(INFLIGHT["most"], INFLIGHT["now"])
    try:
        return say_counted(request, context, md)
    finally:
        with INFLIGHT_LOCK:
            INFLIGHT["now"] -= 1


def say_counted(request, context, md):
    left = context.time_remaining()
    if "x-sleep" in md:
        deadline = time.time() + float(md["x-sleep"])
        while time.time() < deadline:
            if not context.is_active():
                print("cancelled Say", flush=True)
                return b""
            time.sleep(0.02)
    if "x-status" in md:
        context.abort(grpc.StatusCode[md["x-status"]], "asked to fail with " + md["x-status"])
    trailers = [("x-echo-len", str(len(request)))]
    if left is not None and "x-show-left" in md:
        trailers.append(("x-time-left-ms", str(int(left * 1000))))
    context.set_trailing_metadata(trailers)
    return request


def count(request, context):
    n, interval = request.decode().split()
    for i in range(int(n)):
        if not context.is_active():
            print("cancelled Count", flush=True)
            return
        yield str(i).encode()
        time.sleep(int(interval) / 1000.0)


def total(request_iterator, context):
    return str(sum(len(m) for m in request_iterator)).encode()


def chat(request_iterator, context):
    for m in request_iterator:
        yield m.upper()


def main():
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Sum": grpc.stream_unary_rpc_method_handler(total),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    }
    opts = [("grpc.max_receive_message_length", 100 << 20),
            ("grpc.max_send_message_length", 100 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=opts)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),))
    port = sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"]
    server.add_insecure_port("127.0.0.1:" + port)
    server.start()
    print("grpc app listening on", port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
