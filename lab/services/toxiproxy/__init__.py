"""A TCP fault proxy that speaks Toxiproxy's v2 HTTP API (Shopify/toxiproxy), stdlib only.

It runs inside the fault-proxy image as `python3 -m toxiproxy`; unmodified Toxiproxy clients
drive it. Modules: `server` (process and lifecycle), `api` (routes and bodies), `http` (a
minimal HTTP/1.1 server), `proxy` (listeners and proxies), `link` (live connections through
toxic chains), `toxics` (toxic types and their pure logic), `gojson` (Go-style JSON rules).
"""

from .api import VERSION
from .server import ServerThread, ToxiproxyServer, main

__all__ = ["VERSION", "ServerThread", "ToxiproxyServer", "main"]
