"""Serve acme2certifier's WSGI application over HTTPS on one loopback address.

    python -I tests/a2c_serve.py ADDRESS PORT CERT KEY

Run by tests/support/a2c.py with ACME_SRV_CONFIGFILE naming its
configuration.  Upstream's launcher binds 0.0.0.0 without TLS; this binds
ADDRESS only and speaks TLS with the bench's listener certificate.
"""

from __future__ import annotations

import ssl
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from acme2certifier.share.acme2certifier_wsgi import application


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    # A slow http-01 validation must not hold up the client's polling.
    daemon_threads = True


class Handler(WSGIRequestHandler):
    def address_string(self) -> str:
        # No reverse DNS lookup per request.
        return str(self.client_address[0])


def main() -> None:
    address, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    server = make_server(
        address, port, application, server_class=ThreadingWSGIServer, handler_class=Handler
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    # wsgiref reports the scheme from HTTPS; acme2certifier builds its URLs from it.
    server.base_environ["HTTPS"] = "on"
    print(f"serving on https://{address}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
