"""Opens N TCP connections to HOST:PORT from source address SRC and sends
nothing on them; prints "open K" once done (K connected), then holds them
until stdin closes. Raises its own open-file limit as far as allowed.

    python3 idle-flood.py 127.0.0.1 8545 2000 127.0.0.2
"""
import resource
import socket
import sys

host, port, n, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 64 if hard == resource.RLIM_INFINITY else min(hard, n + 64)
if soft != resource.RLIM_INFINITY and soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.bind((src, 0))
        s.connect((host, port))
        socks.append(s)
    except OSError:
        s.close()
print(f"open {len(socks)}", flush=True)
sys.stdin.read()
