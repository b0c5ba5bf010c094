"""Prints N TCP ports (default 2) free on 127.0.0.1 now, drawn at random
below the ephemeral range, so no outgoing connection takes one while the
agents that will listen on them restart. (A port derived from the pid once
hit RabbitMQ's own 25672.)"""
import random
import socket
import sys


def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    ports = []
    while len(ports) < n:
        p = random.randrange(20000, 32000)
        if p not in ports and free(p):
            ports.append(p)
    print(*ports)


if __name__ == "__main__":
    main()
