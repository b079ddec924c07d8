"""The HTTP API of `tidings serve`: REST, Server-Sent Events, Prometheus metrics, OpenAPI."""

from tidings.server.http.app import HttpServer, create_app, serve_http

__all__ = ["HttpServer", "create_app", "serve_http"]
