"""A fake Bambu cloud: the HTTP API, the web host's two-factor sign-in and the cloud MQTT broker.

```python
async with Simulator(time_scale=60) as sim, FakeCloud(sim) as cloud:
    printer = await sim.add_printer(model="P1S")
    alice = cloud.add_account("alice@example.com", "secret")
    cloud.bind(alice, printer)
    print(cloud.api_url, cloud.web_url, cloud.mqtt_port)
```

Where things are:

- :mod:`~bambulab.sim.cloud.model` and :mod:`~bambulab.sim.cloud.state`: the data (accounts,
  switches, tasks, projects, objects; tokens, bindings, presets) and pure helpers (tokens, TOTP,
  presigned URLs);
- the use cases, one module each, composed into :class:`FakeCloud`:
  :mod:`~bambulab.sim.cloud.accounts` (accounts, tokens, codes, two-factor),
  :mod:`~bambulab.sim.cloud.devices` (bound printers and the MQTT relay),
  :mod:`~bambulab.sim.cloud.history` (tasks and cloud prints),
  :mod:`~bambulab.sim.cloud.files` (projects, uploads, slicer presets);
- :mod:`~bambulab.sim.cloud.service`: :class:`FakeCloud` itself, its servers' lifecycle and URLs;
- the adapters: :mod:`~bambulab.sim.cloud.http` (the API app and its server),
  :mod:`~bambulab.sim.cloud.api_account`, :mod:`~bambulab.sim.cloud.api_devices`,
  :mod:`~bambulab.sim.cloud.api_files` (the API's handlers), :mod:`~bambulab.sim.cloud.web` (the
  web host and the admin endpoint) and :mod:`~bambulab.sim.cloud.mqtt` (the cloud broker).
"""

from __future__ import annotations

from bambulab.sim.cloud.model import Account, CloudSwitches, LoginMode, TaskStatus
from bambulab.sim.cloud.service import FakeCloud
from bambulab.sim.cloud.state import BUCKET, LoggedRequest

__all__ = ["BUCKET", "Account", "CloudSwitches", "FakeCloud", "LoggedRequest", "LoginMode", "TaskStatus"]
