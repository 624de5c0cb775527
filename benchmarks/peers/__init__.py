"""The servers the gateway is compared with: the limit (a bare ASGI app) and a peer (FastAPI)."""
