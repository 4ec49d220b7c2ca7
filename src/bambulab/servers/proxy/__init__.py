"""The Bambu cloud API proxy: strict read-only allowlist or faithful full mode, behind custom tokens.

```python
from bambulab.cloud.tokens import TokenManager
from bambulab.servers.proxy import ProxyApp, ProxyConfig, ProxyServer

app = ProxyApp(ProxyConfig(TokenManager("tokens.json"), mode="strict"))
async with ProxyServer(app, port=5001) as server:
    ...
```

See ``docs/proxy.md``. Needs the ``server`` extra (Starlette, uvicorn, prometheus-client).
"""

from __future__ import annotations

from bambulab.servers.proxy.app import UPSTREAMS, ProxyApp, ProxyConfig
from bambulab.servers.proxy.server import ProxyServer

__all__ = ["UPSTREAMS", "ProxyApp", "ProxyConfig", "ProxyServer"]
