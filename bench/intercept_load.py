#!/usr/bin/env python3
"""Load for bench/intercept.sh: CONN keep-alive HTTPS connections through a proxy
(CONNECT, then TLS to the site, verified against --ca), each sending GETs one after
the other for --warmup + --duration seconds (with --rate, paced so that all connections
together send that many requests per second: both proxies then see the same load).
Prints one JSON line: requests answered
in the measured part and the CPU (utime + stime) the process tree of --pid used then.
Stdlib only (asyncio, ssl)."""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_ticks(root):
    """utime + stime (+ children's) over the process tree rooted at `root`."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                s = f.read().decode("latin-1")
        except OSError:
            continue
        rest = s[s.rfind(")") + 2:].split()
        parents[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in parents:
            total += parents[pid][1]
        todo.extend(p for p, (ppid, _) in parents.items() if ppid == pid)
    return total


async def connection(args, context, state):
    reader, writer = await asyncio.open_connection("127.0.0.1", args.proxy_port)
    writer.write(f"CONNECT {args.host}:{args.port} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise SystemExit(f"CONNECT refused: {head!r}")
    await writer.start_tls(context, server_hostname=args.host)
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    gap = args.conns / args.rate if args.rate else 0
    due = loop.time()
    while not state["stop"]:
        if gap:
            due += gap
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"not 200: {head!r} {body!r}")
        if state["measuring"]:
            state["requests"] += 1
    writer.close()


async def main(args):
    context = ssl.create_default_context(cafile=args.ca)
    state = {"stop": False, "measuring": False, "requests": 0}
    tasks = [asyncio.create_task(connection(args, context, state)) for _ in range(args.conns)]
    await asyncio.sleep(args.warmup)
    before, started = tree_ticks(args.pid), time.monotonic()
    state["measuring"] = True
    await asyncio.sleep(args.duration)
    state["measuring"] = False
    after, elapsed = tree_ticks(args.pid), time.monotonic() - started
    state["stop"] = True
    await asyncio.wait(tasks, timeout=5)
    for task in tasks:
        if task.done() and task.exception():
            raise task.exception()
    cpu = (after - before) / CLK_TCK
    print(json.dumps({
        "requests": state["requests"],
        "seconds": round(elapsed, 3),
        "rps": round(state["requests"] / elapsed, 1),
        "cpu_s": cpu,
        "cpu_ms_per_1k": round(cpu * 1e6 / max(state["requests"], 1), 3),
    }))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--proxy-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--ca", required=True)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--rate", type=float, default=0, help="requests per second in all (0: as fast as answered)")
    asyncio.run(main(p.parse_args()))
