"""A free TCP port on this machine, for servers we start (Valkey, PostgreSQL, drills)."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel has just handed out (free until someone else takes it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
