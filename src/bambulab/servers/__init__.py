"""ASGI servers over the library: the farm gateway (and the cloud proxy)."""
