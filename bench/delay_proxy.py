#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds a fixed delay each way, to try b2m over a slow link.

Usage: delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS_EACH_WAY

Each chunk read from one side is written to the other side DELAY ms after it was read, in order.
Chunks are scheduled by the time they were read, not slept on one after another, so the delay
adds latency without capping throughput: 20 ms each way adds 40 ms to every round trip. A new
connection's handshake costs a round trip too, as on a real link: the client's first bytes leave
no earlier than one round trip after it connected.
"""

import asyncio
import sys

CHUNK = 64 * 1024
QUEUE_CHUNKS = 1024  # what one direction may hold in flight: 64 MiB


async def pump(reader, writer, delay, not_before=0.0):
    """Copies `reader` to `writer`, each chunk `delay` seconds after it was read (or after
    `not_before`, loop time, if that is later); half-closes `writer` at the end."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(QUEUE_CHUNKS)

    async def read():
        try:
            while data := await reader.read(CHUNK):
                await queue.put((max(loop.time(), not_before) + delay, data))
        except ConnectionError:
            pass
        await queue.put((max(loop.time(), not_before) + delay, b""))

    reading = asyncio.create_task(read())
    try:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(due - loop.time())
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        reading.cancel()


async def handle(client_reader, client_writer, target_port, delay):
    """Relays one client connection to the target, delayed both ways."""
    handshake_done = asyncio.get_running_loop().time() + 2 * delay
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pump(client_reader, server_writer, delay, not_before=handshake_done),
            pump(server_reader, client_writer, delay),
        )
    finally:
        for writer in (client_writer, server_writer):
            writer.close()


async def serve(listen_port, target_port, delay):
    """Accepts connections on 127.0.0.1:listen_port until killed."""
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target_port, delay), "127.0.0.1", listen_port
    )
    print(f"delay_proxy: 127.0.0.1:{listen_port} → 127.0.0.1:{target_port}, "
          f"{delay * 1000:g} ms each way", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS_EACH_WAY")
    listen_port, target_port, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    try:
        asyncio.run(serve(listen_port, target_port, delay_ms / 1000))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
