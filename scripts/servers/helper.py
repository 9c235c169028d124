#!/usr/bin/env python3
"""Small helpers for scripts/servers/*.sh (standard library only).

  helper.py ports N OWNER        print N free 127.0.0.1 TCP ports, one a line,
                                 and reserve them for OWNER (a checkout path)
  helper.py release OWNER        drop every port reservation held by OWNER
  helper.py http URL [TEXT]      exit 0 if GET URL answers 200 (and body has TEXT)
  helper.py tcp PORT             exit 0 if something accepts on 127.0.0.1:PORT
  helper.py kafka PORT           exit 0 if the broker on 127.0.0.1:PORT answers a
                                 Metadata request listing at least one broker
  helper.py kafka-warm PORT N SECS
                                 wait (up to SECS) until the group coordinator
                                 answers for all N __consumer_offsets partitions,
                                 the transaction coordinator exists and an
                                 idempotent producer id can be allocated
  helper.py kafka-id             print a random Kafka cluster id (base64url, 22 chars)
  helper.py secret [BYTES]       print a random hex secret

Why ports are not simply "bind port 0": the kernel hands out port-0 ports from
the ephemeral range (ip_local_port_range), the same range it uses for the local
end of outgoing connections. While a test has stopped a server (ctl.sh stop)
and clients keep reconnecting to it, one of those client sockets can take the
server's port (TCP self-connect), and the restart then fails with "address in
use". So ports are drawn at random from below the ephemeral range and checked
by binding them. Reservations in $TMPDIR/auditpipe-test-ports keep two
checkouts on one machine from picking each other's ports while a server of the
other is stopped for a restart test.
"""
import base64
import os
import random
import secrets
import socket
import struct
import sys
import urllib.error
import urllib.request

RES_DIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), "auditpipe-test-ports")


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def can_bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None


def reservation_alive(path):
    """A reservation is alive while its owner checkout still has a state file."""
    try:
        with open(path) as f:
            owner = f.read().strip()
    except OSError:
        return False
    return os.path.exists(os.path.join(owner, ".servers", "state"))


def ports(n, owner):
    os.makedirs(RES_DIR, mode=0o777, exist_ok=True)
    lo, _hi = ephemeral_range()
    rng = random.SystemRandom()
    if lo > 12000:
        pick = lambda: rng.randint(10000, lo - 1)  # noqa: E731
    else:  # unusual kernel setting: fall back to the kernel's choice
        pick = None
    held, chosen = [], []
    try:
        for _ in range(2000):
            if len(chosen) == n:
                break
            if pick is None:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                p = s.getsockname()[1]
            else:
                p = pick()
                if p in chosen:
                    continue
                s = can_bind(p)
                if s is None:
                    continue
            res = os.path.join(RES_DIR, str(p))
            if os.path.exists(res):
                if reservation_alive(res):
                    s.close()
                    continue
                try:
                    os.unlink(res)
                except OSError:
                    pass
            try:
                fd = os.open(res, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                s.close()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(owner + "\n")
            held.append(s)
            chosen.append(p)
    finally:
        for s in held:
            s.close()
    if len(chosen) != n:
        sys.exit("could not find %d free ports" % n)
    print("\n".join(str(p) for p in chosen))


def release(owner):
    try:
        names = os.listdir(RES_DIR)
    except OSError:
        return
    for name in names:
        path = os.path.join(RES_DIR, name)
        try:
            with open(path) as f:
                if f.read().strip() == owner:
                    os.unlink(path)
        except OSError:
            pass


def http(url, text=None):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            body = r.read(65536).decode("utf-8", "replace")
            ok = r.status == 200 and (text is None or text in body)
    except (urllib.error.URLError, OSError, ValueError):
        ok = False
    sys.exit(0 if ok else 1)


def tcp(port):
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    except OSError:
        sys.exit(1)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def kafka(port):
    """Metadata v4 (exists in Kafka 1.0 .. 4.x), no topics; need >= 1 broker."""
    client_id = b"auditpipe-up"
    header = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation=false
    req = header + body
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=3) as s:
            s.settimeout(3)
            s.sendall(struct.pack(">i", len(req)) + req)
            (size,) = struct.unpack(">i", recv_exact(s, 4))
            resp = recv_exact(s, size)
    except OSError:
        sys.exit(1)
    corr, _throttle, brokers = struct.unpack(">iii", resp[:12])
    sys.exit(0 if corr == 7 and brokers >= 1 else 1)


def java_hash(text):
    h = 0
    for ch in text.encode("utf-16-be").decode("utf-16-be"):
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


class KafkaConn:
    def __init__(self, port):
        self.port = int(port)
        self.sock = None
        self.corr = 0

    def call(self, api_key, version, body):
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.sock.settimeout(5)
        self.corr += 1
        client_id = b"auditpipe-warmup"
        req = struct.pack(">hhih", api_key, version, self.corr, len(client_id)) + client_id + body
        try:
            self.sock.sendall(struct.pack(">i", len(req)) + req)
            (size,) = struct.unpack(">i", recv_exact(self.sock, 4))
            resp = recv_exact(self.sock, size)
        except OSError:
            self.sock.close()
            self.sock = None
            raise
        (corr,) = struct.unpack(">i", resp[:4])
        if corr != self.corr:
            raise OSError("correlation id mismatch")
        return resp[4:]


def kstr(text):
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def kafka_warm(port, partitions, secs):
    """Error codes: 0 ok; 14/15/16 coordinator loading / not available / not coordinator."""
    import time

    deadline = time.monotonic() + float(secs)
    conn = KafkaConn(port)
    groups, covered, i = [], set(), 0
    while len(covered) < int(partitions):
        gid = "auditpipe-warmup-%d" % i
        part = abs(java_hash(gid)) % int(partitions)
        if part not in covered:
            covered.add(part)
            groups.append(gid)
        i += 1
    # FindCoordinator v1 (api 10): key, key_type (0 group, 1 transaction)
    # InitProducerId v1 (api 22): null transactional id, timeout
    # OffsetFetch v2 (api 9): group, null topics -> error_code after topics array
    checks = [("find group coordinator", 10, 1, kstr(groups[0]) + b"\x00", lambda r: struct.unpack(">h", r[4:6])[0])]
    checks.append(("find transaction coordinator", 10, 1, kstr("auditpipe-warmup") + b"\x01",
                   lambda r: struct.unpack(">h", r[4:6])[0]))
    checks.append(("allocate producer id", 22, 1, struct.pack(">hi", -1, 60000),
                   lambda r: struct.unpack(">h", r[4:6])[0]))
    for gid in groups:
        checks.append(("offsets of " + gid, 9, 2, kstr(gid) + struct.pack(">i", -1),
                       lambda r: struct.unpack(">h", r[4:6])[0] if struct.unpack(">i", r[:4])[0] == 0 else 0))
    last = "not started"
    for label, api, ver, body, err_of in checks:
        while True:
            try:
                err = err_of(conn.call(api, ver, body))
            except OSError as e:
                err = str(e)
            if err == 0:
                break
            last = "%s: error %s" % (label, err)
            if time.monotonic() > deadline:
                sys.exit("kafka warm-up timed out (%s)" % last)
            time.sleep(0.2)


def kafka_id():
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            print(cid)
            return


def main(argv):
    if not argv:
        sys.exit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "ports":
        ports(int(args[0]), args[1])
    elif cmd == "release":
        release(args[0])
    elif cmd == "http":
        http(args[0], args[1] if len(args) > 1 else None)
    elif cmd == "tcp":
        tcp(args[0])
    elif cmd == "kafka":
        kafka(args[0])
    elif cmd == "kafka-warm":
        kafka_warm(args[0], args[1], args[2])
    elif cmd == "kafka-id":
        kafka_id()
    elif cmd == "secret":
        print(secrets.token_hex(int(args[0]) if args else 16))
    else:
        sys.exit("unknown command: " + cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
