"""This machine's name in a cluster: GLIMPSER_NODE_NAME, or the hostname.

Processes on several machines share one Redis. Each names its machine the same way
everywhere it shows or keys by it: the RQ worker's hostname, the process heartbeats and the
hosts of Admin → System (glimpser.heartbeats), the readers' heartbeats and stream leases
(glimpser.capture.leases) and the per-host Chromium cap (glimpser.sources.browser_pool).
Set it when two machines share a hostname (containers often do), or to give one a clearer
name; it is read from the environment so that every process of a machine agrees.
"""

from __future__ import annotations

import os
import re
import socket

NODE_ENV = "GLIMPSER_NODE_NAME"
# Used inside Redis keys and "host:pid:random" owner ids: no colon, no spaces.
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

_configured: str | None = None


def valid(name: str) -> bool:
    return bool(NODE_NAME.fullmatch(name))


def configure(name: str) -> None:
    """Set the name for this process (the settings' node_name; "" = the hostname)."""
    global _configured
    _configured = name or None


def name() -> str:
    """The node name: configured, else GLIMPSER_NODE_NAME from the environment, else the
    hostname (cut to what NODE_NAME allows)."""
    if _configured:
        return _configured
    raw = os.environ.get(NODE_ENV, "").strip()
    if raw and valid(raw):
        return raw
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).lstrip("._-")[:63]
    return host or "localhost"
