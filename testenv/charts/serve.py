"""A Helm chart repository for tests: static files (index.yaml and packaged
charts) over HTTPS with HTTP basic auth, as a web server or object store
serves them. Every request is logged, one line each, to stderr.

    serve.py ROOT PORT CERT KEY USERNAME PASSWORD
"""

import base64
import functools
import http.server
import ssl
import sys

root, port, cert, key, username, password = sys.argv[1:7]
expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        sys.stderr.write(fmt % args + "\n")
        sys.stderr.flush()


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), functools.partial(Handler, directory=root))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("serving", flush=True)
server.serve_forever()
