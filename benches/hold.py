#!/usr/bin/env python3
"""Holds hostile connections open against a loopback server while a benchmark runs.

    hold.py HOST PORT --idle N --slowloris M --seconds S

- idle: connect and send nothing;
- slowloris: connect and send one byte of a request head every few seconds, never finishing it.

The server closes both at its header-read timeout; each is reopened at once, so about N + M
connections stay open for S seconds. Only loopback addresses are accepted. Prints one line:
how many connections were opened, and how many were closed by the server.
"""

import argparse
import asyncio
import ipaddress
import resource
import sys

HEAD = b"GET /api_v0.0.1 HTTP/1.1\r\nHost: x\r\nX-Slow: "


async def holder(host, port, slow, deadline, stats):
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        stats["opened"] += 1
        try:
            sent = 0
            while loop.time() < deadline:
                if slow:
                    writer.write(HEAD[sent : sent + 1] if sent < len(HEAD) else b"a")
                    sent += 1
                    await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(1024), timeout=3 if slow else 1)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    stats["closed"] += 1
                    break
        except OSError:
            stats["closed"] += 1
        finally:
            writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--idle", type=int, default=0)
    p.add_argument("--slowloris", type=int, default=0)
    p.add_argument("--seconds", type=float, default=10)
    a = p.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        sys.exit("hold.py: loopback addresses only")
    need = a.idle + a.slowloris + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    stats = {"opened": 0, "closed": 0, "refused": 0}
    deadline = asyncio.get_running_loop().time() + a.seconds
    tasks = [holder(a.host, a.port, False, deadline, stats) for _ in range(a.idle)]
    tasks += [holder(a.host, a.port, True, deadline, stats) for _ in range(a.slowloris)]
    await asyncio.gather(*tasks)
    print(f"opened {stats['opened']} closed-by-server {stats['closed']} refused {stats['refused']}")


asyncio.run(main())
