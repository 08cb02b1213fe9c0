# A webhook receiver for the alert tests: records every POST (path, query, Authorization,
# body) as one JSON line in OUT, answers like a robot ({"errcode":0}), and refuses the first
# request to /flaky with 503 so that the agent must retry. Writes its port to PORT_FILE.
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

OUT, PORT_FILE = sys.argv[1], sys.argv[2]
lock = threading.Lock()
refused = set()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8")
        url = urlsplit(self.path)
        flaky = url.path == "/flaky" and url.path not in refused
        with lock:
            if flaky:
                refused.add(url.path)
            with open(OUT, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "path": url.path,
                    "query": url.query,
                    "auth": self.headers.get("Authorization"),
                    "content_type": self.headers.get("Content-Type"),
                    "status": 503 if flaky else 200,
                    "body": json.loads(body),
                }) + "\n")
        answer = b'{"errcode":0,"errmsg":"ok"}'
        self.send_response(503 if flaky else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
