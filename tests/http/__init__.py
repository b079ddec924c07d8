"""The HTTP API, tested over real sockets against a real uvicorn server."""
