"""Sources: one module per kind, each with `capture(config, ctx) -> Frame`."""

from __future__ import annotations

import importlib

from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.schemas import SourceConfig

__all__ = ["CaptureContext", "CaptureError", "Frame", "capture"]


def capture(config: SourceConfig, ctx: CaptureContext, *, elements: bool = False) -> Frame:
    """Capture one frame with the kind's module (imported on first use: Chromium stays out
    of processes that never capture websites). `elements`: a website's visible elements too,
    for the stream form's element picker."""
    module = importlib.import_module(f"glimpser.sources.{config.kind}")
    if elements and config.kind == "website":
        return module.capture(config, ctx, elements=True)
    return module.capture(config, ctx)
