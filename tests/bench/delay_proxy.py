#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""delay_proxy.py -- a TCP proxy on 127.0.0.1 that makes a fast local link
look like a slow WAN, for tests/bench/bench_sync.sh --proxy.

  delay_proxy.py --target-port PORT [--target-host 127.0.0.1]
                 [--delay-ms 20] [--rate-mbit 8] [--port-file FILE] [--log FILE]

Every accepted connection is forwarded to the target. Each direction of each
connection is a simulated link: bytes are serialised at --rate-mbit (default
8 Mbit/s) and then delivered --delay-ms later (default 20 ms one way, so
40 ms round trip plus serialisation). Reading from a side stops while more
than about one bandwidth-delay product plus 256 KiB is in flight, so TCP
backpressure reaches the sender as on a real link. The proxy passes bytes
through untouched (TLS stays end to end and is verified by the clients: the
test certificate covers IP:127.0.0.1).

Listens on 127.0.0.1:0 (or --port), writes its port to --port-file once
ready, runs until SIGTERM/SIGINT. Standard library only.
"""

import argparse
import asyncio
import collections
import os
import signal
import time


class Link:
    """One direction: src reader -> dst writer with rate limit and delay."""

    def __init__(self, reader, writer, rate_bps, delay, stats, name):
        self.r = reader
        self.w = writer
        self.rate = rate_bps / 8.0  # bytes per second
        self.delay = delay
        self.q = collections.deque()
        self.inflight = 0
        self.limit = int(self.rate * (delay * 2 + 0.05)) + 256 * 1024
        self.cond = asyncio.Condition()
        self.busy_until = 0.0
        self.eof = False
        self.stats = stats
        self.name = name

    async def pump_in(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                async with self.cond:
                    await self.cond.wait_for(lambda: self.inflight < self.limit)
                data = await self.r.read(16384)
                if not data:
                    break
                now = loop.time()
                start = max(now, self.busy_until)
                self.busy_until = start + len(data) / self.rate
                async with self.cond:
                    self.q.append((self.busy_until + self.delay, data))
                    self.inflight += len(data)
                    self.cond.notify_all()
        except (ConnectionError, OSError):
            pass
        finally:
            async with self.cond:
                self.eof = True
                self.cond.notify_all()

    async def pump_out(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                async with self.cond:
                    await self.cond.wait_for(lambda: self.q or self.eof)
                    if not self.q:
                        break
                    due, data = self.q.popleft()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.w.write(data)
                await self.w.drain()
                self.stats[self.name] += len(data)
                async with self.cond:
                    self.inflight -= len(data)
                    self.cond.notify_all()
            if self.w.can_write_eof():
                self.w.write_eof()
        except (ConnectionError, OSError):
            pass


async def main_async(a):
    stats = collections.Counter()
    conns = [0]
    logf = open(a.log, "a", buffering=1) if a.log else None

    def log(msg):
        if logf:
            logf.write("%.3f %s\n" % (time.time(), msg))

    async def handle(cr, cw):
        conns[0] += 1
        cid = conns[0]
        try:
            sr, sw = await asyncio.open_connection(a.target_host, a.target_port)
        except OSError as e:
            log("c%d connect to target failed: %s" % (cid, e))
            cw.close()
            return
        log("c%d open" % cid)
        t0 = time.monotonic()
        up = Link(cr, sw, a.rate_mbit * 1e6, a.delay_ms / 1000.0, stats, "up")
        down = Link(sr, cw, a.rate_mbit * 1e6, a.delay_ms / 1000.0, stats, "down")
        await asyncio.gather(up.pump_in(), up.pump_out(), down.pump_in(), down.pump_out())
        for w in (cw, sw):
            try:
                w.close()
            except Exception:
                pass
        log("c%d closed after %.2f s (totals: up %d, down %d bytes)" % (cid, time.monotonic() - t0,
                                                                         stats["up"], stats["down"]))

    server = await asyncio.start_server(handle, "127.0.0.1", a.port)
    port = server.sockets[0].getsockname()[1]
    log("listening on 127.0.0.1:%d -> %s:%d, %g ms each way, %g Mbit/s per direction per connection"
        % (port, a.target_host, a.target_port, a.delay_ms, a.rate_mbit))
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(a.port_file + ".tmp", a.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    log("stopped")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--rate-mbit", type=float, default=8.0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    a = ap.parse_args()
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
