"""API security: signed service requests, service clients, rate limits, headers, CORS, CSRF.

Every protection here is pure ASGI middleware or a service the endpoints call; the order in
which the middleware wraps the application is set in :mod:`.wiring`.
"""
