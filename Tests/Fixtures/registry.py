#!/usr/bin/env python3
"""A real OCI registry (Debian's `docker-registry`, distribution 2.8) with token auth, for tests.

    python3 Tests/Fixtures/registry.py --dir DIR --blob FILE [--repo NAME] [--tag TAG]
                                       [--auth token|none] [--user USER:PASS] [--exit-with-parent]

It
  1. generates an RSA key and a self-signed certificate for signing tokens (DIR/token.key, .crt);
  2. runs a token server in this process (stdlib HTTP, port chosen by the kernel):
     GET /token?service=S&scope=repository:NAME:ACTIONS → {"token", "access_token", "expires_in",
     "issued_at"}, an RS256 JWT with the certificate in `x5c` granting the requested actions.
     With --user, the token server requires that user (Basic auth) and answers 401 otherwise.
     GET /__stats → {"tokens": {scope: count}, "denied": n}; POST /__reset zeroes them.
     ?expires_in=N on /__config (POST body "N") changes the lifetime of later tokens;
  3. writes DIR/config.yml (filesystem storage in DIR/storage, `auth: token:` with realm,
     service, issuer, rootcertbundle) and runs `docker-registry serve` on 127.0.0.1;
  4. pushes FILE as a layer blob, a small config blob and an OCI image manifest for NAME:TAG
     over plain HTTP (POST /v2/NAME/blobs/uploads/, PUT ?digest=, PUT /v2/NAME/manifests/TAG);
  5. prints one JSON line: {"registry", "realm", "repository", "tag", "blob_digest",
     "config_digest", "manifest_digest", "manifest_size"} and keeps running until killed (or its
     parent ends, with --exit-with-parent). The registry process ends with it.
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

SERVICE = "darter-test-registry"
ISSUER = "darter-test-token-issuer"
STATS_LOCK = threading.Lock()
STATS = {"tokens": {}, "denied": 0}
SETTINGS = {"expires_in": 300}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_key_and_cert(directory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(directory, "token.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_token(key, cert, subject, access):
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256",
              "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]}
    claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + SETTINGS["expires_in"],
              "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def token_handler(key, cert, user):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, body, extra=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/__reset":
                with STATS_LOCK:
                    STATS["tokens"] = {}
                    STATS["denied"] = 0
                return self.reply(200, {})
            if self.path == "/__config":
                SETTINGS["expires_in"] = int(body.decode().strip())
                return self.reply(200, SETTINGS)
            self.reply(404, {})

        def do_GET(self):
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/__stats":
                with STATS_LOCK:
                    return self.reply(200, STATS)
            if parts.path != "/token":
                return self.reply(404, {})
            query = urllib.parse.parse_qs(parts.query)
            subject = "anonymous"
            if user:
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(user.encode()).decode()
                if auth != expected:
                    with STATS_LOCK:
                        STATS["denied"] += 1
                    return self.reply(401, {"details": "bad credentials"},
                                      [("WWW-Authenticate", 'Basic realm="token"')])
                subject = user.split(":", 1)[0]
            if query.get("service", [""])[0] != SERVICE:
                return self.reply(400, {"details": "unknown service"})
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
                with STATS_LOCK:
                    STATS["tokens"][scope] = STATS["tokens"].get(scope, 0) + 1
            token = make_token(key, cert, subject, access)
            self.reply(200, {"token": token, "access_token": token, "expires_in": SETTINGS["expires_in"],
                             "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    return Handler


def die_with_parent():
    """In the child: SIGKILL when this script ends, however it ends (prctl PR_SET_PDEATHSIG)."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Plain-HTTP client for pushing, doing the token dance itself."""

    def __init__(self, base, user):
        self.base = base
        self.user = user
        self.tokens = {}

    def call(self, method, url, data=None, headers=None, scope=None):
        headers = dict(headers or {})
        if scope and scope in self.tokens:
            headers["Authorization"] = "Bearer " + self.tokens[scope]
        req = urllib.request.Request(url if url.startswith("http") else self.base + url, data=data,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            if e.code == 401 and scope and scope not in self.tokens:
                challenge = e.headers.get("WWW-Authenticate", "")
                params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
                q = urllib.parse.urlencode({"service": params["service"], "scope": scope})
                treq = urllib.request.Request(params["realm"] + "?" + q)
                if self.user:
                    treq.add_header("Authorization", "Basic " + base64.b64encode(self.user.encode()).decode())
                with urllib.request.urlopen(treq) as t:
                    self.tokens[scope] = json.loads(t.read())["token"]
                return self.call(method, url, data, headers, scope)
            raise

    def push_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        scope = "repository:%s:pull,push" % repo
        status, headers, _ = self.call("POST", "/v2/%s/blobs/uploads/" % repo, data=b"", scope=scope)
        assert status == 202, status
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        status, _, _ = self.call("PUT", location + sep + "digest=" + digest, data=data,
                                 headers={"Content-Type": "application/octet-stream"}, scope=scope)
        assert status == 201, status
        return digest

    def push_manifest(self, repo, tag, manifest, media_type):
        scope = "repository:%s:pull,push" % repo
        status, headers, _ = self.call("PUT", "/v2/%s/manifests/%s" % (repo, tag), data=manifest,
                                       headers={"Content-Type": media_type}, scope=scope)
        assert status == 201, status
        return headers.get("Docker-Content-Digest")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--blob", required=True)
    ap.add_argument("--repo", default="darter/test")
    ap.add_argument("--tag", default="v1")
    ap.add_argument("--auth", choices=["token", "none"], default="token")
    ap.add_argument("--user", help="USER:PASS the token server requires")
    ap.add_argument("--registry-bin", default="/usr/bin/docker-registry")
    ap.add_argument("--exit-with-parent", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    key, cert = make_key_and_cert(args.dir)
    token_server = ThreadingHTTPServer(("127.0.0.1", 0), token_handler(key, cert, args.user))
    token_server.daemon_threads = True
    threading.Thread(target=token_server.serve_forever, daemon=True).start()
    realm = "http://127.0.0.1:%d/token" % token_server.server_address[1]

    port = free_port()
    auth = ""
    if args.auth == "token":
        auth = ("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n"
                % (realm, SERVICE, ISSUER, os.path.join(args.dir, "token.crt")))
    config = ("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
              "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
              "http:\n  addr: 127.0.0.1:%d\n%s" % (os.path.join(args.dir, "storage"), port, auth))
    config_path = os.path.join(args.dir, "config.yml")
    with open(config_path, "w") as f:
        f.write(config)
    log = open(os.path.join(args.dir, "registry.log"), "wb")
    registry = subprocess.Popen([args.registry_bin, "serve", config_path], stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)

    def stop(*_):
        registry.kill()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    base = "http://127.0.0.1:%d" % port
    deadline = time.time() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/v2/").read()
            break
        except urllib.error.HTTPError:
            break  # 401: up, and asking for a token
        except OSError:
            if registry.poll() is not None or time.time() > deadline:
                sys.stderr.write(open(os.path.join(args.dir, "registry.log")).read())
                registry.kill()
                sys.exit("registry did not start")
            time.sleep(0.05)

    client = Registry(base, args.user)
    with open(args.blob, "rb") as f:
        layer = f.read()
    layer_digest = client.push_blob(args.repo, layer)
    config_blob = json.dumps({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = client.push_blob(args.repo, config_blob)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_blob)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": len(layer)}],
    }, separators=(",", ":")).encode()
    manifest_digest = client.push_manifest(args.repo, args.tag, manifest,
                                           "application/vnd.oci.image.manifest.v1+json")
    with STATS_LOCK:
        STATS["tokens"] = {}
        STATS["denied"] = 0
    print(json.dumps({"registry": base, "realm": realm, "token_server": realm.rsplit("/", 1)[0],
                      "repository": args.repo, "tag": args.tag,
                      "blob_digest": layer_digest, "config_digest": config_digest,
                      "manifest_digest": manifest_digest, "manifest_size": len(manifest)}), flush=True)

    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if registry.poll() is not None:
            sys.exit("registry exited")
        if args.exit_with_parent and os.getppid() != parent:
            stop()


if __name__ == "__main__":
    main()
