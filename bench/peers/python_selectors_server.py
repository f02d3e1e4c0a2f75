#!/usr/bin/env python3
"""python-selectors: the classic single-threaded multi-connection echo server.

One selectors loop (epoll underneath). Each readable socket gets one recv;
what send() does not take is kept (a slice of the unsent part) and the socket
is watched for writability instead of readability until it is flushed.

    python_selectors_server.py --port 0   # prints "listening on 127.0.0.1:PORT"

--threads is accepted for a uniform command line; this server is single-threaded.
SIGTERM/SIGINT: exit 0.
"""
import argparse
import resource
import selectors
import signal
import socket
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7007)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)

    def close(conn):
        sel.unregister(conn)
        conn.close()

    while True:
        for key, events in sel.select():
            sock = key.fileobj
            if sock is listener:
                try:
                    while True:
                        conn, _ = listener.accept()
                        conn.setblocking(False)
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sel.register(conn, selectors.EVENT_READ, b"")
                except BlockingIOError:
                    pass
                continue
            data = key.data
            try:
                if not data:  # readable
                    data = sock.recv(65536)
                    if not data:
                        close(sock)
                        continue
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                close(sock)
                continue
            rest = data[sent:]
            if rest or key.data:  # state changed: unsent bytes appeared or left
                sel.modify(sock, selectors.EVENT_WRITE if rest else selectors.EVENT_READ, rest)


if __name__ == "__main__":
    main()
