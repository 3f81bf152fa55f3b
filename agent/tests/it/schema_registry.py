"""A Confluent-compatible schema registry for agent/tests/it/real_cluster.rs: the REST subset the
agent uses, over https with basic auth.

Usage: python3 schema_registry.py CERT KEY USER PASSWORD ID=SCHEMA.avsc [ID=SCHEMA.avsc ...]

Prints the port it listens on (127.0.0.1, chosen by the system) on stdout, then one line per
request on stderr: "<method> <path> <status>".

  GET /schemas/ids/<id>   200 {"schema": "<the schema text>"} for a known id; 404 with
                          {"error_code": 40403, ...} for an unknown one
  anything else           404 {"error_code": 404, ...}
  wrong or no credentials 401 {"error_code": 401, ...}
"""

import base64
import http.server
import json
import re
import ssl
import sys

cert, key, user, password = sys.argv[1:5]
schemas = {}
for arg in sys.argv[5:]:
    sid, path = arg.split("=", 1)
    with open(path) as f:
        schemas[int(sid)] = f.read()
expected = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


class Registry(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/vnd.schemaregistry.v1+json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        print("%s %s %d" % (self.command, self.path, status), file=sys.stderr, flush=True)

    def do_GET(self):
        if self.headers.get("authorization") != expected:
            self.answer(401, {"error_code": 401, "message": "Unauthorized"})
            return
        m = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
        if m is None:
            self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        elif int(m.group(1)) in schemas:
            self.answer(200, {"schema": schemas[int(m.group(1))]})
        else:
            self.answer(404, {"error_code": 40403, "message": "Schema not found"})

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
