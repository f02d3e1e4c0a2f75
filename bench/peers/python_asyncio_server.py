#!/usr/bin/env python3
"""python-asyncio: the classic single-threaded asyncio echo server.

One task per connection: await loop.sock_recv(), then loop.sock_sendall()
(which waits for the kernel to take every byte), repeat.

    python_asyncio_server.py --port 0   # prints "listening on 127.0.0.1:PORT"

--threads is accepted for a uniform command line; this server is single-threaded.
SIGTERM/SIGINT: exit 0.
"""
import argparse
import asyncio
import resource
import signal
import socket


async def handle(loop, conn):
    with conn:
        try:
            while data := await loop.sock_recv(conn, 65536):
                await loop.sock_sendall(conn, data)
        except OSError:
            pass


async def serve(port):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    tasks = set()

    async def accept_loop():
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(handle(loop, conn))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    acceptor = loop.create_task(accept_loop())
    await stop
    acceptor.cancel()
    for task in tasks:
        task.cancel()
    listener.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7007)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
