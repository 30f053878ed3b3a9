"""Channel addresses (``unix:/path``, ``unix:@name``, ``tcp:IP:PORT``, ``tcp:[IPv6]:PORT``)
and the sockets behind them.

``unix:`` alone (an "any" form) binds a kernel-chosen abstract name and ``tcp:IP:0``
a free port; ``bound_addr`` reports the concrete address a listener got.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Tuple, Union

SockAddr = Union[str, Tuple[str, int]]


def parse(addr: str) -> Tuple[int, SockAddr]:
    """The socket family and address for ``addr``; ValueError naming the problem."""
    if addr.startswith("unix:"):
        path = addr[len("unix:"):]
        if path == "":
            return socket.AF_UNIX, ""
        if path.startswith("@"):
            return socket.AF_UNIX, "\0" + path[1:]
        if not path.startswith("/"):
            raise ValueError(f"address {addr!r}: a unix path must be absolute or @abstract")
        if len(path.encode()) > 107:
            raise ValueError(f"address {addr!r}: a unix path is at most 107 bytes")
        return socket.AF_UNIX, path
    if addr.startswith("tcp:"):
        rest = addr[len("tcp:"):]
        if rest.startswith("["):
            host, sep, port = rest[1:].partition("]:")
            family = socket.AF_INET6
        else:
            host, sep, port = rest.rpartition(":")
            family = socket.AF_INET
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"address {addr!r}: expected tcp:IPv4:PORT or tcp:[IPv6]:PORT")
        return family, (host, int(port))
    raise ValueError(f"address {addr!r}: missing scheme; expected tcp: or unix:")


def bound_addr(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):
            name = name.decode()
        return "unix:@" + name[1:] if name.startswith("\0") else "unix:" + name
    if sock.family == socket.AF_INET6:
        return f"tcp:[{name[0]}]:{name[1]}"
    return f"tcp:{name[0]}:{name[1]}"


def listen_socket(addr: str) -> socket.socket:
    family, sa = parse(addr)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sa)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(addr: str) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    family, sa = parse(addr)
    if family == socket.AF_UNIX and sa == "":
        raise ValueError(f"address {addr!r} is an any-form; it cannot be dialled")
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, sa)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await asyncio.open_connection(sock=sock, limit=1 << 20)
    except BaseException:
        sock.close()
        raise
