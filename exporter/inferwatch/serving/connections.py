"""The sockets a /metrics server holds: one listening socket for every interface, how many
accepted sockets it may keep (`connection_budget`), what eviction reads of each
(`Connection`), and how an address or a peer is written in messages.

Apart from the server because these are facts about sockets and the process's descriptors,
not about HTTP or rendering; the eviction policy that reads them stays with the server.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import resource
import socket
import sys
import termios
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from inferwatch.serving.http1 import Reader

# The share of the process's open-file limit one server may hold in sockets, and a floor
# so a tiny limit still leaves room for a scrape and a few attackers to evict.
DESCRIPTOR_SHARE = 4
MIN_CONNECTION_BUDGET = 8

T = TypeVar("T")


async def unhandled(read: Awaitable[T], connection: Connection) -> T:
    """`read`, marking the connection once it returns: wait_for runs it as a task of its
    own, and the bytes it took are in no buffer until the caller resumes."""
    data = await read
    connection.unhandled = True
    return data


def connection_budget(max_connections: int) -> int:
    """How many sockets one server may hold: `max_connections`, but at most a quarter of
    this process's open-file limit (read now), so the host keeps its descriptors.

    >>> import resource
    >>> soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    >>> connection_budget(10**9) <= max(soft // 4, 8)
    True
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, max(soft // DESCRIPTOR_SHARE, MIN_CONNECTION_BUDGET)))


@dataclass(eq=False)
class Connection:
    """One accepted socket, as eviction sees it."""

    task: asyncio.Task[None]
    transport: asyncio.BaseTransport
    reader: Reader
    last_active: float  # accepted, or last answered (monotonic seconds)
    trusted: bool = False  # answered a request without error: a real client
    busy: bool = False  # rendering: not evictable (renders are capped at max_concurrency)
    # Waiting for (or running) a bcrypt check: evictable, and its pipelined requests spare
    # it no more than an idle socket; eviction cancels the wait.
    checking_password: bool = False
    unhandled: bool = False  # read a request (or its first byte) not yet handled
    # Answered with an error and closing (what is left of its request read, lingering):
    # the first to go, whatever bytes it still has unread (a guesser's pipelined requests).
    refused: bool = False

    def has_unread_bytes(self) -> bool:
        """Whether the peer sent bytes not handled yet: in the socket (FIONREAD), a whole
        request head in the stream's buffer, or one read by a task whose caller has not
        resumed yet.
        """
        if self.unhandled or self.reader.has_request():
            return True
        sock = self.transport.get_extra_info("socket")
        try:
            waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, AttributeError, ValueError):
            return False  # closed already: nothing to spare
        return int.from_bytes(waiting, sys.byteorder) > 0


def dual_stack_socket(addr: str, port: int, backlog: int) -> socket.socket | None:
    """One socket for IPv4 and IPv6 when `addr` means every interface ("" or "::"), else None.

    Left to asyncio, "" binds an IPv4 and an IPv6 socket, and with port 0 each gets its own
    free port (the server would report one, the other reaching nothing); "::" binds IPv6
    only. One dual-stack socket listens on every address at one port, as Go's net.Listen
    (node_exporter) and prometheus_client's start_http_server do for these addresses.

    >>> dual_stack_socket("127.0.0.1", 0, 8) is None
    True
    """
    if addr not in ("", "::") or not socket.has_dualstack_ipv6():
        return None
    try:
        return socket.create_server(("::", port), family=socket.AF_INET6, backlog=backlog,
                                    reuse_port=False, dualstack_ipv6=True)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise
        return None  # IPv6 switched off on this host: asyncio's sockets, as before


def host_port(addr: str, port: int) -> str:
    """`addr` and `port` as one address, an IPv6 address in brackets.

    >>> host_port("127.0.0.1", 9100), host_port("::1", 9100)
    ('127.0.0.1:9100', '[::1]:9100')
    """
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def peer(writer: asyncio.StreamWriter) -> str:
    """The client's address and port as logs write it, or "-" when the socket has none."""
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "-"
