"""The RQ worker class `glimpser worker` runs.

A SimpleWorker (jobs run in the worker's own process, so a worker keeps one Chromium across
website captures) that reports this node's name (glimpser.node) as its host, so that
Admin → System groups workers by the same host names as the other processes.

Stopping: SIGTERM or SIGINT asks RQ for a warm shutdown. A job in hand runs to its end (a
capture is stored, a notification is delivered exactly once), then the worker exits and
closes its Chromium; an idle worker exits at once. A second signal is RQ's cold shutdown: the
job is cut off as by kill -9, and the usual recovery applies (docs/reliability.md).
"""

from __future__ import annotations

from typing import Any

from rq import SimpleWorker

from glimpser import node


class GlimpserWorker(SimpleWorker):
    """SimpleWorker whose hostname is the node name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hostname = node.name()
