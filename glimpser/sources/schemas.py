"""One schema per source kind: the stream form, the import and the worker all use these.

A field's `title` is its form label and `description` its help text; `json_schema_extra`
carries the form widget where the type alone does not say it. Secret fields are SecretStr:
never rendered back, exported only on request.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from glimpser import schema_helpers
from glimpser.analysis.schemas import AnalysisSettings

KINDS: tuple[str, ...] = ("rtsp", "http_image", "mjpeg", "video", "youtube", "website")
KIND_LABELS = {
    "rtsp": "IP camera (RTSP)",
    "http_image": "Camera still image (snapshot URL)",
    "mjpeg": "MJPEG stream",
    "video": "Video (HLS, MP4 or a media file)",
    "youtube": "YouTube and other video sites (yt-dlp)",
    "website": "Website or dashboard (Chromium)",
}
# Where a kind's captures run: Chromium captures on their own queue.
KIND_QUEUE = {kind: ("browser" if kind == "website" else "capture") for kind in KINDS}


def _url(value: str, schemes: tuple[str, ...]) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(f"must start with {allowed}")
    if not parts.hostname:
        raise ValueError("has no host")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value


def split_credentials(url: str) -> tuple[str, str, str]:
    """URL without user:password@, plus the user and password that were in it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, "", ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


def timeout_field(default: int) -> Any:
    """The capture timeout every kind has; kinds differ only in the default."""
    return Field(
        default,
        ge=1,
        le=300,
        title="Timeout (seconds)",
        description="A capture that takes longer is stopped and counted as failed.",
    )


class SourceConfig(BaseModel):
    """Fields every kind has."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()
    URL_SCHEMES: ClassVar[tuple[str, ...]] = ("http", "https")
    URL_MISSING: ClassVar[str] = "Enter the address"  # an empty required URL, in plain words

    kind: str
    timeout: int = timeout_field(15)

    @field_validator("url", check_fields=False)
    @classmethod
    def _check_url(cls, v: str) -> str:
        """Every kind's `url` must use one of the kind's schemes (empty only where optional)."""
        if not v and not cls.model_fields["url"].is_required():
            return v
        if not v:
            raise ValueError(cls.URL_MISSING)
        return _url(v, cls.URL_SCHEMES)

    @model_validator(mode="after")
    def _credentials_out_of_url(self) -> SourceConfig:
        """user:password@ in a URL moves into the separate fields, so it is never shown."""
        url = getattr(self, "url", None)
        if url and "username" in type(self).model_fields:
            clean, user, password = split_credentials(url)
            if user or password:
                object.__setattr__(self, "url", clean)
                if user and not self.username:  # type: ignore[attr-defined]
                    object.__setattr__(self, "username", user)
                if password and not self.password.get_secret_value():  # type: ignore[attr-defined]
                    object.__setattr__(self, "password", SecretStr(password))
        return self

    def secret(self, name: str) -> str:
        return schema_helpers.secret_text(self, name)


_PASSWORD = {"widget": "password"}


class _Credentials(BaseModel):
    username: str = Field("", max_length=200, title="Username")
    password: SecretStr = Field(
        SecretStr(""),
        title="Password",
        json_schema_extra=_PASSWORD,
        description="Stored, never shown again. Leave empty to keep.",
    )


class RtspConfig(SourceConfig, _Credentials):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})
    URL_SCHEMES: ClassVar[tuple[str, ...]] = ("rtsp", "rtsps")

    URL_MISSING: ClassVar[str] = "Enter the camera's RTSP address"
    kind: Literal["rtsp"] = "rtsp"
    url: str = Field(title="RTSP URL", description="e.g. rtsp://192.168.1.20:554/stream1")
    transport: Literal["tcp", "udp", "auto"] = Field(
        "tcp", title="Transport", description="TCP is the most reliable; UDP has less delay."
    )


class HttpImageConfig(SourceConfig, _Credentials):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    URL_MISSING: ClassVar[str] = "Enter the camera's snapshot address"
    kind: Literal["http_image"] = "http_image"
    url: str = Field(title="Image URL", description="e.g. http://192.168.1.21/snapshot.jpg")
    auth: Literal["none", "basic", "digest"] = Field("none", title="Authentication")


class MjpegConfig(SourceConfig, _Credentials):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    URL_MISSING: ClassVar[str] = "Enter the camera's MJPEG address"
    kind: Literal["mjpeg"] = "mjpeg"
    url: str = Field(title="MJPEG URL", description="e.g. http://192.168.1.22/video.mjpg")
    auth: Literal["none", "basic", "digest"] = Field("none", title="Authentication")


class VideoConfig(SourceConfig):
    URL_SCHEMES: ClassVar[tuple[str, ...]] = ("http", "https", "rtmp", "rtmps")

    kind: Literal["video"] = "video"
    url: str = Field("", title="Video URL", description="HLS (.m3u8), MP4 or another stream URL.")
    path: str = Field(
        "", title="Media file", description="Instead of a URL: a file under the media directory."
    )
    seek: float = Field(
        0,
        ge=0,
        le=10 * 24 * 3600,
        title="Seek (seconds)",
        description="For recorded video: where to take the frame from.",
    )

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if v and (v.startswith("/") or ".." in v.split("/") or "\\" in v):
            raise ValueError("must be a relative path inside the media directory")
        return v

    @model_validator(mode="after")
    def _url_or_path(self) -> VideoConfig:
        if bool(self.url) == bool(self.path):
            raise ValueError("give either a video URL or a media file, not both")
        return self


class YoutubeConfig(SourceConfig):
    URL_MISSING: ClassVar[str] = "Enter the video page's address"
    kind: Literal["youtube"] = "youtube"
    url: str = Field(
        title="Page URL", description="Any page yt-dlp understands (live or recorded)."
    )
    quality: Literal["best", "worst", "1080", "720", "480", "360"] = Field(
        "720", title="Quality", description="Best, worst, or the largest height up to this."
    )
    seek: float = Field(
        0,
        ge=0,
        le=10 * 24 * 3600,
        title="Seek (seconds)",
        description="For recorded video: where to take the frame from.",
    )
    timeout: int = timeout_field(30)  # pages and yt-dlp need longer


_CSS_OR_XPATH = re.compile(r"^[^\x00-\x1f]*$")
# Ignore patterns for a website's text: a few short regular expressions, compiled once and run
# on text cut to TEXT_MAX_CHARS (glimpser.analysis.textchange), so their cost stays bounded.
MAX_IGNORE_PATTERNS = 20
MAX_IGNORE_PATTERN_CHARS = 200
# A website snapshot keeps at most this much of the page's text.
TEXT_MAX_CHARS = 100_000


class WebsiteConfig(SourceConfig, _Credentials):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    URL_MISSING: ClassVar[str] = "Enter the page's address"
    kind: Literal["website"] = "website"
    url: str = Field(title="Page URL", description="The page or dashboard to capture.")
    viewport_width: int = Field(1280, ge=200, le=7680, title="Viewport width (px)")
    viewport_height: int = Field(720, ge=200, le=4320, title="Viewport height (px)")
    full_page: bool = Field(False, title="Capture the full page height")
    wait: Literal["load", "networkidle", "selector", "delay"] = Field(
        "load", title="Wait for", description="When the page counts as ready."
    )
    wait_selector: str = Field("", max_length=1000, title="Wait for this CSS selector")
    wait_delay: float = Field(0, ge=0, le=120, title="Extra delay (seconds)")
    selector_type: Literal["css", "xpath"] = Field("css", title="Element selector type")
    element_selector: str = Field(
        "",
        max_length=1000,
        title="Crop to element",
        description="Capture only this element (CSS or XPath).",
    )
    hide_selectors: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list,
        max_length=schema_helpers.MAX_LIST_ITEMS,
        title="Hide elements",
        description="CSS selectors to hide, one per line (cookie banners, ads).",
        json_schema_extra={"widget": "lines"},
    )
    dark_mode: bool = Field(False, title="Dark mode")
    extract_text: bool = Field(
        False,
        title="Keep the page's text",
        description="Store the text of the page (or of the element above) with each snapshot, "
        "for text diffs.",
    )
    change_by: Literal["picture", "text", "either"] = Field(
        "picture",
        title="Judge changes by",
        description="picture: pixels outside the masks; text: the kept text, without the "
        "ignored patterns; either: one of both.",
    )
    ignore_text: list[Annotated[str, Field(max_length=MAX_IGNORE_PATTERN_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_IGNORE_PATTERNS,
        title="Ignore text",
        description=r"Regular expressions, one per line, removed from the text before comparing "
        r"(a clock: \d{1,2}:\d{2}(:\d{2})?).",
        json_schema_extra={"widget": "lines"},
    )
    timeout: int = timeout_field(30)  # pages and yt-dlp need longer

    @field_validator("ignore_text", mode="before")
    @classmethod
    def _pattern_lines(cls, v: Any) -> Any:
        return schema_helpers.split_lines(v)

    @field_validator("ignore_text")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return v

    @field_validator("element_selector", "wait_selector")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if not _CSS_OR_XPATH.match(v):
            raise ValueError("must be a single line")
        return v

    @field_validator("hide_selectors", mode="before")
    @classmethod
    def _lines(cls, v: Any) -> Any:
        return schema_helpers.split_lines(v)

    @model_validator(mode="after")
    def _wait_needs(self) -> WebsiteConfig:
        if self.wait == "selector" and not self.wait_selector:
            raise ValueError("waiting for a selector needs the selector")
        if self.change_by != "picture" and not self.extract_text:
            raise ValueError("judging changes by the text needs “Keep the page's text” on")
        return self


SourceConfigUnion = Annotated[
    RtspConfig | HttpImageConfig | MjpegConfig | VideoConfig | YoutubeConfig | WebsiteConfig,
    Field(discriminator="kind"),
]
CONFIG_BY_KIND: dict[str, type[SourceConfig]] = {
    "rtsp": RtspConfig,
    "http_image": HttpImageConfig,
    "mjpeg": MjpegConfig,
    "video": VideoConfig,
    "youtube": YoutubeConfig,
    "website": WebsiteConfig,
}
_config_adapter: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfigUnion)


def parse_config(data: dict[str, Any]) -> SourceConfig:
    """Validate a stored or submitted config dict (must contain `kind`)."""
    return _config_adapter.validate_python(data)


def dump_config(config: SourceConfig, *, include_secrets: bool) -> dict[str, Any]:
    """The dict stored in the database (with secrets) or exported/shown (without)."""
    return schema_helpers.dump_config(config, include_secrets=include_secrets)


class StreamSpec(BaseModel):
    """Everything that defines a stream, as the form and the import submit it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, title="Name")
    description: str = Field("", max_length=5000, title="Description")
    groups: list[str] = Field(
        default_factory=list,
        max_length=schema_helpers.MAX_LIST_ITEMS,
        title="Groups",
        description="Comma-separated, e.g. outdoor, traffic",
    )
    interval: int = Field(60, ge=1, le=7 * 24 * 3600, title="Capture every (seconds)")
    enabled: bool = Field(True, title="Enabled")
    retention_max_age_days: int | None = Field(
        None, ge=0, le=36500, title="Keep snapshots for (days)"
    )
    retention_max_count: int | None = Field(
        None, ge=0, le=2**31 - 1, title="Keep at most (snapshots)"
    )
    retention_max_bytes: int | None = Field(None, ge=0, le=2**63 - 1, title="Keep at most (bytes)")
    config: SourceConfigUnion
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)

    @field_validator("groups", mode="before")
    @classmethod
    def _split_groups(cls, v: Any) -> Any:
        return schema_helpers.split_list(v, max_chars=64)


def error_messages(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as {field path: message}, e.g. {"config.url": "must start with …"}.

    The union's kind tag is dropped from paths, so `config.rtsp.url` reads `config.url`;
    errors that belong to no single field are under "config" or "" (the whole entry).
    """
    out = schema_helpers.error_messages(exc, KINDS)
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if p not in KINDS)
        if key in _SECONDS_FIELDS and err["type"] in _NUMBER_ERRORS:
            ctx = err.get("ctx") or {}
            out[key] = (
                f"Enter a number of seconds, at most {ctx['le']}"
                if err["type"] == "less_than_equal"
                else "Enter a number of seconds, at least 1"
            )
        elif key == "config.url" and err["type"] == "missing":
            kind = str(err["loc"][1]) if len(err["loc"]) > 1 else ""
            config = CONFIG_BY_KIND.get(kind)
            out[key] = config.URL_MISSING if config else SourceConfig.URL_MISSING
    return out


# Fields in seconds whose errors read "Enter a number of seconds, at least 1" (not pydantic's
# "Input should be greater than or equal to 1").
_SECONDS_FIELDS = frozenset({"interval", "config.timeout"})
_NUMBER_ERRORS = frozenset(
    {"int_parsing", "int_from_float", "int_type", "greater_than_equal", "less_than_equal"}
)


# The stream's own plain fields (besides the nested `config` and `analysis`), in form order;
# status fields are not among them.
STREAM_FIELDS: tuple[str, ...] = tuple(
    n for n in StreamSpec.model_fields if n not in ("config", "analysis")
)
