#!/usr/bin/python3
"""WebSocket echo client for end-to-end tests (Debian's python3-websockets).

Usage: ws_client.py URL MESSAGES INTERVAL_SECONDS [Name:value,Name:value]
Sends MESSAGES text messages, one every INTERVAL_SECONDS, checks each echo, prints
"ok N" and exits 0; prints the failure and exits 1 otherwise. Bounded: 60 s overall.
"""
import asyncio
import sys

import websockets


async def main(url: str, count: int, interval: float, extra: str = "") -> int:
    headers = dict(h.split(":", 1) for h in extra.split(",")) if extra else None
    async with websockets.connect(url, open_timeout=10, close_timeout=5,
                                  extra_headers=headers) as ws:
        for i in range(count):
            if i:
                await asyncio.sleep(interval)
            msg = f"message {i}"
            await ws.send(msg)
            echo = await asyncio.wait_for(ws.recv(), timeout=10)
            if echo != msg:
                print(f"bad echo {echo!r} for {msg!r}", flush=True)
                return 1
            print(f"echo {i}", flush=True)
    print(f"ok {count}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        code = asyncio.run(asyncio.wait_for(
            main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                 sys.argv[4] if len(sys.argv) > 4 else ""), timeout=60))
    except Exception as e:  # the test reads this line
        print(f"error {type(e).__name__}: {e}", flush=True)
        code = 1
    sys.exit(code)
