"""Sources: one module per kind, each with `capture(config, ctx) -> Frame`."""

from __future__ import annotations

import importlib

from glimpser.sources.base import CaptureContext, CaptureError, Frame
from glimpser.sources.schemas import SourceConfig

__all__ = ["CaptureContext", "CaptureError", "Frame", "capture"]


def capture(config: SourceConfig, ctx: CaptureContext) -> Frame:
    """Capture one frame with the kind's module (imported on first use: Chromium stays out
    of processes that never capture websites)."""
    module = importlib.import_module(f"glimpser.sources.{config.kind}")
    return module.capture(config, ctx)
