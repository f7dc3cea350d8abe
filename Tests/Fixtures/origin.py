#!/usr/bin/env python3
"""A small misbehaving HTTP/1.1 origin for tests (stdlib only).

    python3 Tests/Fixtures/origin.py --port P --dir DIR [--tls CERT KEY] [--exit-with-parent]

Prints `origin: listening on 127.0.0.1:P` (the real port when P is 0) once it accepts.

Paths
  GET|HEAD /files/<name>      the file DIR/<name>: Content-Length, ETag, Last-Modified,
                              Accept-Ranges: bytes, one `Range: bytes=a-b` → 206 + Content-Range
                              (unsatisfiable → 416), If-None-Match → 304.
  GET /__stats                {"requests": {path_with_query: n}, "body_bytes": {path: n},
                               "body_bytes_by_request": {path_with_query: n}}
  POST /__reset               zeroes the counters (and the ?fail= counters)
  GET /__echo                 JSON {"method", "path", "headers": [[name, value], ...]} of the request

Misbehaviours (query parameters on /files/ paths; they combine where it makes sense)
  ?drop=N        headers with the full Content-Length, N body bytes, then a hard close (RST)
  ?short=N       Content-Length says the full length, N bytes are sent, then a clean close (FIN)
  ?fail=K        the first K requests for this path+query get 503, then normal
  ?chunked=1     Transfer-Encoding: chunked, no Content-Length
  ?drip=BPS      body sent at about BPS bytes per second
  ?norange=1     ignore Range: always 200 with the full body
  ?etag=rotate   a different ETag on every request
  ?status=NNN    that status with a short text body
  ?redirect=P    302 with Location: P (a path or an absolute URL; `self`: this same URL, a loop)
"""
import argparse
import email.utils
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LOCK = threading.Lock()
REQUESTS = {}
BODY_BYTES = {}
BODY_BYTES_BY_REQUEST = {}
FAILS = {}
ROTATE = [0]


def count_request(key):
    with LOCK:
        REQUESTS[key] = REQUESTS.get(key, 0) + 1


def count_body(path, key, n):
    with LOCK:
        BODY_BYTES[path] = BODY_BYTES.get(path, 0) + n
        BODY_BYTES_BY_REQUEST[key] = BODY_BYTES_BY_REQUEST.get(key, 0) + n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "darter-test-origin"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("origin: " + (fmt % args) + "\n")

    # --- helpers -------------------------------------------------------------------------
    def send_small(self, status, body, content_type="text/plain", extra=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def hard_close(self):
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    # --- verbs ---------------------------------------------------------------------------
    def do_GET(self):
        self.route()

    def do_HEAD(self):
        self.route()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/__reset":
            with LOCK:
                REQUESTS.clear()
                BODY_BYTES.clear()
                BODY_BYTES_BY_REQUEST.clear()
                FAILS.clear()
            self.send_small(200, "{}", "application/json")
        else:
            self.send_small(405, "method not allowed\n")

    def route(self):
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def _route(self):
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if path == "/__stats":
            with LOCK:
                body = json.dumps({"requests": REQUESTS, "body_bytes": BODY_BYTES,
                                   "body_bytes_by_request": BODY_BYTES_BY_REQUEST})
            return self.send_small(200, body, "application/json")
        if path == "/__echo":
            body = json.dumps({"method": self.command, "path": self.path,
                               "headers": [[k, v] for k, v in self.headers.items()]})
            return self.send_small(200, body, "application/json")
        if not path.startswith("/files/"):
            return self.send_small(404, "not found\n")

        key = self.path
        count_request(key)

        if "fail" in query:
            with LOCK:
                seen = FAILS.get(key, 0)
                FAILS[key] = seen + 1
            if seen < int(query["fail"]):
                return self.send_small(503, "try again\n", extra=[("Retry-After", "0")])
        if "redirect" in query:
            target = self.path if query["redirect"] == "self" else query["redirect"]
            return self.send_small(302, "moved\n", extra=[("Location", target)])
        if "status" in query:
            status = int(query["status"])
            return self.send_small(status, "status %d\n" % status)

        name = unquote(path[len("/files/"):])
        full = os.path.realpath(os.path.join(self.server.root, name))
        if not full.startswith(self.server.root + os.sep) or not os.path.isfile(full):
            return self.send_small(404, "no such file\n")
        st = os.stat(full)
        size = st.st_size
        if query.get("etag") == "rotate":
            with LOCK:
                ROTATE[0] += 1
                etag = '"r%d-%x"' % (ROTATE[0], size)
        else:
            etag = '"%x-%x"' % (st.st_mtime_ns, size)
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)

        inm = self.headers.get("If-None-Match")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return

        start, end, status = 0, size, 200  # [start, end)
        rng = self.headers.get("Range")
        if rng and query.get("norange") != "1":
            parsed = parse_range(rng, size)
            if parsed == "unsatisfiable":
                return self.send_small(416, "", extra=[("Content-Range", "bytes */%d" % size)])
            if parsed is not None:
                start, end = parsed
                status = 206
        length = end - start

        chunked = query.get("chunked") == "1"
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if query.get("norange") != "1":
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return

        limit = length
        mode = None
        if "drop" in query:
            limit, mode = min(length, int(query["drop"])), "drop"
        elif "short" in query:
            limit, mode = min(length, int(query["short"])), "short"
        drip = int(query["drip"]) if "drip" in query else 0
        self.wfile.flush()
        sent = self.send_body(full, start, limit, chunked, drip, path, key)
        if mode == "drop":
            return self.hard_close()
        if mode == "short":
            self.close_connection = True
            return
        if chunked and sent == limit:
            self.wfile.write(b"0\r\n\r\n")

    def send_body(self, full, start, limit, chunked, drip, path, key):
        sent = 0
        with open(full, "rb") as f:
            if not chunked and not drip and not isinstance(self.connection, ssl.SSLSocket):
                # Fast path: sendfile.
                while sent < limit:
                    n = os.sendfile(self.connection.fileno(), f.fileno(), start + sent, min(limit - sent, 1 << 20))
                    if n == 0:
                        break
                    sent += n
                    count_body(path, key, n)
                return sent
            f.seek(start)
            step = 1 << 16
            if drip:
                step = max(1, min(step, drip // 10 or 1))
            t0 = time.monotonic()
            while sent < limit:
                data = f.read(min(step, limit - sent))
                if not data:
                    break
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                else:
                    self.wfile.write(data)
                self.wfile.flush()
                sent += len(data)
                count_body(path, key, len(data))
                if drip and sent < limit:
                    ahead = sent / drip - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        return sent


def parse_range(value, size):
    """One `bytes=a-b`, `bytes=a-` or `bytes=-n` range → (start, end) half-open; None to ignore."""
    value = value.strip()
    if not value.startswith("bytes=") or "," in value:
        return None
    spec = value[len("bytes="):].strip()
    try:
        first, last = spec.split("-", 1)
        if first == "":
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return (max(0, size - n), size)
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return None
    if a >= size or b < a:
        return "unsatisfiable"
    return (a, min(b, size - 1) + 1)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the process that started this one ends")
    args = ap.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.root = os.path.realpath(args.dir)
    server.verbose = args.verbose
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    if args.exit_with_parent:
        parent = os.getppid()

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    print("origin: listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
