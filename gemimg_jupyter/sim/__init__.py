"""The built-in simulator of the ToAPIs image API.

A real HTTP server on 127.0.0.1 that speaks the gateway's async protocol
(submit, status, upload, file download, error envelopes, rate-limit headers)
and renders deterministic stand-in images; every real-world fault can be
switched on. Use it in-process::

    from gemimg_jupyter.sim import SimConfig, SimServer

    with SimServer(SimConfig(latency=(0.5, 2.0), fail_rate=0.1)) as sim:
        base_url = sim.base_url

or standalone: ``python -m gemimg_jupyter.sim --port 8787``.
"""

from __future__ import annotations

from gemimg_jupyter.sim.render import RenderSpec, render, render_png
from gemimg_jupyter.sim.server import CONFIG_HELP, SimConfig, SimServer

__all__ = ["CONFIG_HELP", "RenderSpec", "SimConfig", "SimServer", "render", "render_png"]
