"""Getting metrics out: the hardened ``/metrics`` server and its web config, the ASGI / WSGI
apps and middleware, the Pushgateway client and the prometheus_client bridge.
"""
