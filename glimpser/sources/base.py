"""What every source module shares: the frame it returns, the error it raises, its context."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glimpser.config import Settings


class CaptureError(Exception):
    """A capture failed; the message is the real cause, safe to show (no credentials)."""


@dataclass(frozen=True)
class Frame:
    """One captured picture, already normalised to JPEG by glimpser.media.imaging.to_jpeg()."""

    jpeg: bytes
    width: int
    height: int
    content_type: str = "image/jpeg"
    # Websites with text extraction on: the page's (or element's) text, bounded; else None.
    text: str | None = None
    # Websites, test captures only: the visible elements for the stream form's picker.
    elements: dict[str, Any] | None = None


@dataclass(frozen=True)
class CaptureContext:
    """The settings a capture needs, separated from the rest so sources stay testable."""

    max_jpeg_bytes: int
    allow_loopback: bool
    deny_cidrs: tuple[str, ...]
    media_dir: Path
    chromium: str

    @classmethod
    def from_settings(cls, settings: Settings) -> CaptureContext:
        return cls(
            max_jpeg_bytes=settings.capture_max_jpeg_bytes,
            allow_loopback=settings.allow_loopback_sources,
            deny_cidrs=settings.source_deny_cidrs,
            media_dir=settings.media_dir,
            chromium=settings.chromium,
        )
