#!/usr/bin/python3
"""Prints N distinct TCP ports on 127.0.0.1 that are free right now, one a line.

    python3 test/harness/freeport.py [N]
    python3 test/harness/freeport.py --check PORT   # exit 1 (and say so) if taken
    import freeport; freeport.free_ports(3)

The kernel picks each port (bind to port 0); all N sockets stay bound until
every port is chosen, so the N ports differ. A port can still be taken by
someone else between this check and its use: whoever binds it then must fail
with a message that names the port (every script of the suite does).
"""
import socket
import sys


def port_is_free(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return nobody_listens(port, host)


def free_ports(n=1, host="127.0.0.1"):
    held, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind((host, 0))
            held.append(s)
            port = s.getsockname()[1]
            if port not in ports and nobody_listens(port, host):
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def nobody_listens(port, host):
    """For a port we hold bound: nobody else listens on it (SO_REUSEPORT)."""
    with socket.socket() as c:
        c.settimeout(0.5)
        return c.connect_ex((host, port)) != 0


def free_port(host="127.0.0.1"):
    return free_ports(1, host)[0]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        if port_is_free(int(sys.argv[2])):
            sys.exit(0)
        sys.stderr.write("port %s on 127.0.0.1 is already in use\n" % sys.argv[2])
        sys.exit(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for p in free_ports(n):
        print(p)
