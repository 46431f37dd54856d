"""A gRPC client for the end-to-end tests (Debian's python3-grpcio; no generated code).

  grpc_client.py TARGET AUTHORITY METHOD [--deadline S] [--payload TEXT]

Makes one unary call of METHOD ("/pkg.Service/Method") with raw bytes as the message,
the `:authority` set to AUTHORITY (Sluice routes by it), and prints one line:
  ok <response bytes as text>
  error <STATUS_CODE_NAME> <details>
"""
import argparse
import sys

import grpc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("authority")
    p.add_argument("method")
    p.add_argument("--deadline", type=float, default=30.0)
    p.add_argument("--payload", default="ping")
    a = p.parse_args()
    options = [("grpc.default_authority", a.authority), ("grpc.enable_retries", 0)]
    with grpc.insecure_channel(a.target, options=options) as channel:
        call = channel.unary_unary(a.method, request_serializer=None, response_deserializer=None)
        try:
            reply = call(a.payload.encode(), timeout=a.deadline)
            print("ok", reply.decode(errors="replace"))
        except grpc.RpcError as e:
            print("error", e.code().name, e.details())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
