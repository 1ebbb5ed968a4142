#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A TCP proxy on 127.0.0.1 that can turn into a black hole.

  blackhole_proxy.py --target PORT --port-file FILE

Forwards every connection to 127.0.0.1:PORT. On SIGUSR1 the connections
open at that moment stop forwarding in both directions without closing
(the way a NAT box or a suspended laptop loses a TCP session); connections
made afterwards work normally. Standard library only.
"""
import argparse
import asyncio
import os
import signal

frozen = set()  # ids of connections that stopped forwarding
live = set()


async def pipe(cid, reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if cid in frozen:
                continue  # swallowed: a black hole
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if cid not in frozen:
            try:
                writer.close()
            except OSError:
                pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    counter = [0]

    async def handle(cr, cw):
        counter[0] += 1
        cid = counter[0]
        live.add(cid)
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", a.target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cid, cr, sw), pipe(cid, sr, cw))
        live.discard(cid)

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: frozen.update(live))
    port = srv.sockets[0].getsockname()[1]
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(a.port_file + ".tmp", a.port_file)
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
