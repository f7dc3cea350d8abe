#!/usr/bin/env python3
"""A parent that holds nothing and never sends a piece: its availability feed answers the
snapshot (no pieces) and then stays open. The swarm tests SIGKILL it to see children drop it.
Usage: ghost_parent.py PORT TASK_ID CONTENT_LENGTH PIECE_LENGTH; prints "listening" when ready."""
import http.server, json, socketserver, sys, time

port, task, length, piece = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/pieces"):
            count = (length + piece - 1) // piece
            meta = {"protocol": 1, "id": task, "contentLength": length, "pieceLength": piece, "pieceCount": count,
                    "complete": False, "pieces": "", "committedPieces": "0" * count, "digest": None, "contentType": None}
            line = (json.dumps({"snapshot": meta}) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            print("feed", flush=True)
            while True:
                time.sleep(60)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", port), Handler)
print("listening", flush=True)
server.serve_forever()
