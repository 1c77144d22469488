"""One schema per channel kind: the channel form, the import and the senders use these.

Modelled on glimpser.sources.schemas: a field's `title` is its form label and `description` its
help text; `json_schema_extra` carries the widget where the type alone does not say it. Secret
fields are SecretStr, listed in SECRET_FIELDS: never rendered back, exported only on request.
Secrets default to empty so that an import without secrets still validates (the stored secret is
kept); a sender whose secret is missing fails with a clear, non-retryable error instead.
"""

from __future__ import annotations

import json
import re
from string import Template
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

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
from glimpser.analysis.schemas import Severity
from glimpser.models import CHANNEL_KINDS
from glimpser.notify.message import TEMPLATE_FIELDS

KINDS: tuple[str, ...] = CHANNEL_KINDS
KIND_LABELS = {
    "webhook": "Webhook (JSON over HTTP)",
    "webpush": "Web Push (browsers)",
    "pushover": "Pushover",
    "email": "Email (SMTP)",
    "cap": "CAP 1.2 alerts (OASIS Common Alerting Protocol)",
    "apprise": "Apprise (many other services)",
}

_PASSWORD = {"widget": "password"}
_SECRET_HELP = "Stored, never shown again. Leave empty to keep."  # noqa: S105 - help text
MAX_HEADERS = 20
MAX_TEMPLATE_CHARS = 10_000
# RFC 9110 token characters: what a header name may consist of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Set by Glimpser itself or by the HTTP layer; a channel may not override them.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "trailer"}
)
# Credentials go in the write-only Authorization field, never in the shown header list.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253})$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")


def http_url(value: str) -> str:
    """An http(s) URL with a host, no spaces and no user:password@ (credentials would be shown)."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("has no host")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not contain user:password@ (use the Authorization field, which is never shown)"
        )
    if len(value) > 2000:
        raise ValueError("is too long (2000 characters at most)")
    return value


def email_address(value: str) -> str:
    """A bare address (local@domain); display names and lists are refused."""
    value = value.strip()
    if not _EMAIL.match(value) or ".." in value.split("@")[1]:
        raise ValueError(f"{value[:100]!r} is not an email address")
    return value


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Extra HTTP headers: valid names, one-line values, nothing Glimpser sets itself."""
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, value in headers.items():
        lower = name.lower()
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name[:60]!r} is not a valid header name")
        if lower in seen:
            raise ValueError(f"header {name!r} is given twice")
        seen.add(lower)
        if lower in _RESERVED_HEADERS or lower.startswith("x-glimpser-"):
            raise ValueError(f"header {name!r} is set by Glimpser and cannot be changed")
        if lower in _CREDENTIAL_HEADERS:
            raise ValueError(
                f"put credentials in the Authorization field (never shown), not in {name!r}"
            )
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00") or len(value) > 2000:
            raise ValueError(f"header {name!r} must have a one-line value (2000 characters max)")
    return headers


def _parse_header_lines(value: Any) -> Any:
    """The form sends headers as "Name: value" lines; the import sends an object."""
    if not isinstance(value, str):
        return value
    headers: dict[str, str] = {}
    for number, line in enumerate(value.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        if not sep:
            raise ValueError(f"line {number} is not 'Name: value'")
        headers[name.strip()] = rest.strip()
    return headers


def _secret_field(title: str, description: str = _SECRET_HELP, **extra: Any) -> Any:
    return Field(
        SecretStr(""), title=title, description=description, json_schema_extra=_PASSWORD, **extra
    )


class ChannelConfig(BaseModel):
    """Fields every kind has."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, hide_input_in_errors=True)
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()
    # Secrets without which the channel cannot send (an import may omit them: checked at send).
    REQUIRED_SECRETS: ClassVar[frozenset[str]] = frozenset()

    kind: str

    def secret_value(self, name: str) -> str:
        """The plain value of a (secret) field; "" when unset."""
        return schema_helpers.secret_text(self, name)

    def missing_secrets(self) -> list[str]:
        """Titles of the required secrets that are empty (for the form and the sender)."""
        fields = type(self).model_fields
        return [
            fields[name].title or name
            for name in sorted(type(self).REQUIRED_SECRETS)
            if not self.secret_value(name)
        ]


class _HttpHeaders(ChannelConfig):
    """Checks for the `headers` and `authorization` fields of the kinds that send over HTTP."""

    @field_validator("headers", mode="before", check_fields=False)
    @classmethod
    def _headers_from_lines(cls, v: Any) -> Any:
        return _parse_header_lines(v)

    @field_validator("headers", check_fields=False)
    @classmethod
    def _check_headers(cls, v: dict[str, str]) -> dict[str, str]:
        return check_headers(v)

    @field_validator("authorization", check_fields=False)
    @classmethod
    def _one_line_secret(cls, v: SecretStr) -> SecretStr:
        schema_helpers.check_one_line(v.get_secret_value())
        return v


# --- webhook ----------------------------------------------------------------------------------


def template_identifiers(text: str) -> list[str]:
    """The ${name} placeholders in a template text (invalid ones raise ValueError)."""
    template = Template(text)
    if not template.is_valid():
        raise ValueError("has a '$' that is not a ${field} placeholder (write $$ for a dollar)")
    return template.get_identifiers()


def _check_template_strings(node: Any) -> None:
    """Every string (keys too) may use only the known ${field} placeholders."""
    texts: list[str] = []
    if isinstance(node, str):
        texts.append(node)
    elif isinstance(node, dict):
        texts.extend(node.keys())
        for value in node.values():
            _check_template_strings(value)
    elif isinstance(node, list):
        for value in node:
            _check_template_strings(value)
    for text in texts:
        for name in template_identifiers(text):
            if name not in TEMPLATE_FIELDS:
                raise ValueError(
                    f"unknown placeholder ${{{name}}} (known: {', '.join(TEMPLATE_FIELDS)})"
                )


class WebhookConfig(_HttpHeaders):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"secret", "authorization"})

    kind: Literal["webhook"] = "webhook"
    url: str = Field(
        title="URL", description="Where the JSON is sent, e.g. https://hooks.example.com/glimpser"
    )
    method: Literal["POST", "PUT"] = Field("POST", title="Method")
    headers: dict[str, str] = Field(
        default_factory=dict,
        title="Extra headers",
        description="One 'Name: value' per line. Credentials belong in Authorization below.",
        json_schema_extra={"widget": "headers"},
    )
    authorization: SecretStr = _secret_field(
        "Authorization header",
        "Sent as the Authorization header, e.g. 'Bearer <token>'. " + _SECRET_HELP,
    )
    body_template: str = Field(
        "",
        max_length=MAX_TEMPLATE_CHARS,
        title="Body template",
        description=(
            "A JSON document; strings may use ${title}, ${body}, ${severity}, ${url} … "
            'A string that is exactly "${field}" keeps the value\'s JSON type. '
            "Empty: a JSON object with every field."
        ),
        json_schema_extra={"widget": "textarea"},
    )
    secret: SecretStr = _secret_field(
        "Signing secret",
        "With a secret every request carries X-Glimpser-Signature (HMAC-SHA256 over "
        "timestamp.body) for the receiver to verify. " + _SECRET_HELP,
    )
    timeout: int = Field(
        10,
        ge=1,
        le=60,
        title="Timeout (seconds)",
        description="A receiver that takes longer counts as failed (and is retried).",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return http_url(v)

    @field_validator("body_template")
    @classmethod
    def _check_template(cls, v: str) -> str:
        if not v:
            return v
        try:
            document = json.loads(v)
        except ValueError as exc:
            raise ValueError(f"is not valid JSON ({exc})") from None
        if not isinstance(document, dict | list):
            raise ValueError("must be a JSON object or array")
        _check_template_strings(document)
        return v


# --- Pushover ---------------------------------------------------------------------------------

_PUSHOVER_KEY = re.compile(r"^[A-Za-z0-9]{1,64}$")


class PushoverConfig(ChannelConfig):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"app_token", "user_key"})
    REQUIRED_SECRETS: ClassVar[frozenset[str]] = frozenset({"app_token", "user_key"})

    kind: Literal["pushover"] = "pushover"
    app_token: SecretStr = _secret_field(
        "Application token", "Your Pushover application's API token. " + _SECRET_HELP
    )
    user_key: SecretStr = _secret_field(
        "User or group key", "Who receives the notifications. " + _SECRET_HELP
    )
    device: str = Field(
        "",
        max_length=200,
        title="Devices",
        description="Only these device names (comma-separated); empty = all of the user's devices.",
    )
    priority: int = Field(
        0,
        ge=-2,
        le=2,
        title="Priority",
        description="-2 lowest … 2 emergency (repeats until acknowledged; needs retry and expire).",
    )
    retry: int | None = Field(
        None,
        ge=30,
        le=10800,
        title="Emergency: retry every (seconds)",
        description="At least 30.",
    )
    expire: int | None = Field(
        None,
        ge=30,
        le=10800,
        title="Emergency: stop retrying after (seconds)",
        description="At most 10800 (3 hours).",
    )
    sound: str = Field(
        "", max_length=32, title="Sound", description="A Pushover sound name; empty = default."
    )
    attach_snapshot: bool = Field(True, title="Attach the snapshot")

    @field_validator("app_token", "user_key")
    @classmethod
    def _check_key(cls, v: SecretStr) -> SecretStr:
        value = v.get_secret_value()
        if value and not _PUSHOVER_KEY.match(value):
            raise ValueError("must be letters and digits only (as Pushover shows it)")
        return v

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        names = [d.strip() for d in v.split(",") if d.strip()]
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,25}", name):
                raise ValueError(f"{name[:40]!r} is not a Pushover device name")
        return ",".join(names)

    @field_validator("sound")
    @classmethod
    def _check_sound(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", v):
            raise ValueError("is not a Pushover sound name")
        return v

    @model_validator(mode="after")
    def _emergency(self) -> PushoverConfig:
        if self.priority == 2:
            if self.retry is None or self.expire is None:
                raise ValueError("emergency priority (2) needs retry and expire")
            if self.expire < self.retry:
                raise ValueError("expire must not be shorter than retry")
        return self


# --- email ------------------------------------------------------------------------------------


class EmailConfig(ChannelConfig):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    kind: Literal["email"] = "email"
    host: str = Field(max_length=253, title="SMTP server", description="e.g. smtp.example.com")
    port: int = Field(
        587, ge=1, le=65535, title="Port", description="587 for STARTTLS, 465 for TLS, 25 plain."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        title="Encryption",
        description="STARTTLS (port 587), TLS from the start (465), or none (local relays only).",
    )
    username: str = Field("", max_length=200, title="Username", description="Empty: no login.")
    password: SecretStr = _secret_field("Password")
    from_addr: str = Field(max_length=254, title="From", description="e.g. glimpser@example.com")
    to: list[str] = Field(
        min_length=1,
        max_length=50,
        title="To",
        description="One address per line.",
        json_schema_extra={"widget": "lines"},
    )
    subject_prefix: str = Field(
        "[Glimpser]",
        max_length=100,
        title="Subject prefix",
        description="Put before each event's title (with a space); empty = the title alone.",
    )
    attach_snapshot: bool = Field(True, title="Attach the snapshot")
    timeout: int = Field(30, ge=1, le=120, title="Timeout (seconds)")

    @field_validator("host")
    @classmethod
    def _check_host(cls, v: str) -> str:
        if not _HOSTNAME.match(v):
            raise ValueError("is not a host name or address")
        return v.strip("[]")

    @field_validator("from_addr")
    @classmethod
    def _check_from(cls, v: str) -> str:
        return email_address(v)

    @field_validator("to", mode="before")
    @classmethod
    def _to_lines(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [a.strip() for a in re.split(r"[\n,;]", v) if a.strip()]
        return v

    @field_validator("to")
    @classmethod
    def _check_to(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(email_address(a) for a in v))

    @field_validator("subject_prefix")
    @classmethod
    def _one_line(cls, v: str) -> str:
        schema_helpers.check_one_line(v)
        return v

    def missing_secrets(self) -> list[str]:
        """A login needs its password (an import without secrets may have left it empty)."""
        return ["Password"] if self.username and not self.secret_value("password") else []

    @model_validator(mode="after")
    def _password_needs_user(self) -> EmailConfig:
        if self.secret_value("password") and not self.username:
            raise ValueError("a password needs a username")
        return self


# --- Web Push (sender in glimpser.notify.webpush) ---------------------------------------------


class WebPushConfig(ChannelConfig):
    kind: Literal["webpush"] = "webpush"
    users: list[str] = Field(
        default_factory=list,
        max_length=500,
        title="Only these users",
        description="Usernames, one per line; empty = every user who subscribed in a browser "
        "(and may see the stream).",
        json_schema_extra={"widget": "lines"},
    )
    ttl: int = Field(
        24 * 3600,
        ge=0,
        le=28 * 24 * 3600,
        title="Keep for (seconds)",
        description="How long the push service holds a notification for an offline browser.",
    )

    @field_validator("users", mode="before")
    @classmethod
    def _user_lines(cls, v: Any) -> Any:
        return schema_helpers.split_lines(v)

    @field_validator("users")
    @classmethod
    def _unique_users(cls, v: list[str]) -> list[str]:
        for name in v:
            if len(name) > 200:
                raise ValueError("a username is too long")
        return list(dict.fromkeys(v))


# --- CAP 1.2 (builder and sender elsewhere) ---------------------------------------------------


class CapConfig(_HttpHeaders):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"authorization"})

    kind: Literal["cap"] = "cap"
    endpoints: list[str] = Field(
        default_factory=list,
        max_length=20,
        title="Endpoints",
        description="URLs that receive each alert (application/cap+xml), one per line; "
        "empty = the Atom feed only.",
        json_schema_extra={"widget": "lines"},
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        title="Extra headers",
        description="One 'Name: value' per line. Credentials belong in Authorization below.",
        json_schema_extra={"widget": "headers"},
    )
    authorization: SecretStr = _secret_field(
        "Authorization header",
        "Sent as the Authorization header to the endpoints. " + _SECRET_HELP,
    )
    timeout: int = Field(10, ge=1, le=60, title="Timeout (seconds)")
    area_desc: str = Field(
        "",
        max_length=500,
        title="Area description",
        description="CAP <areaDesc>: the place the alerts are about; empty = the stream's name.",
    )

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoint_lines(cls, v: Any) -> Any:
        return schema_helpers.split_lines(v)

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(http_url(u) for u in v))


# --- Apprise ----------------------------------------------------------------------------------

MAX_APPRISE_URLS = 20


def apprise_lines(text: str) -> list[str]:
    """The non-empty, non-comment lines of the Apprise URL text."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


class AppriseConfig(ChannelConfig):
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"urls"})
    REQUIRED_SECRETS: ClassVar[frozenset[str]] = frozenset({"urls"})

    kind: Literal["apprise"] = "apprise"
    urls: SecretStr = Field(
        SecretStr(""),
        title="Apprise URLs",
        description="One per line, e.g. tgram://bot-token/chat-id. They contain tokens, so they "
        "are " + _SECRET_HELP[0].lower() + _SECRET_HELP[1:],
        json_schema_extra={"widget": "secret-lines"},
    )
    attach_snapshot: bool = Field(True, title="Attach the snapshot")

    @field_validator("urls", mode="before")
    @classmethod
    def _join_list(cls, v: Any) -> Any:
        if isinstance(v, list):
            return "\n".join(str(u) for u in v)
        return v

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, v: SecretStr) -> SecretStr:
        lines = apprise_lines(v.get_secret_value())
        if len(lines) > MAX_APPRISE_URLS:
            raise ValueError(f"at most {MAX_APPRISE_URLS} URLs")
        if not lines:
            return SecretStr("")
        import apprise  # imported here: loading every Apprise plugin takes a moment

        for number, line in enumerate(lines, start=1):
            scheme = line.split("://", 1)[0].lower() if "://" in line else ""
            # The message names the line and scheme only: the rest of the URL holds tokens.
            if not scheme:
                raise ValueError(f"line {number} is not a URL (scheme://…)")
            if apprise.Apprise.instantiate(line) is None:
                raise ValueError(
                    f"line {number} ({scheme}://…) is not a URL Apprise understands "
                    "(see the Apprise wiki for the service's URL format)"
                )
        return SecretStr("\n".join(lines))

    def url_list(self) -> list[str]:
        return apprise_lines(self.secret_value("urls"))


# --- parsing and dumping ----------------------------------------------------------------------

ChannelConfigUnion = Annotated[
    WebhookConfig | PushoverConfig | EmailConfig | WebPushConfig | CapConfig | AppriseConfig,
    Field(discriminator="kind"),
]
CONFIG_BY_KIND: dict[str, type[ChannelConfig]] = {
    "webhook": WebhookConfig,
    "webpush": WebPushConfig,
    "pushover": PushoverConfig,
    "email": EmailConfig,
    "cap": CapConfig,
    "apprise": AppriseConfig,
}
assert set(CONFIG_BY_KIND) == set(KINDS)
# Inputs are never repeated in validation errors: they may be secrets.
_config_adapter: TypeAdapter[ChannelConfig] = TypeAdapter(
    ChannelConfigUnion, config=ConfigDict(hide_input_in_errors=True)
)


def parse_config(data: dict[str, Any]) -> ChannelConfig:
    """Validate a stored or submitted channel config dict (must contain `kind`)."""
    return _config_adapter.validate_python(data)


def dump_config(config: ChannelConfig, *, include_secrets: bool) -> dict[str, Any]:
    """The dict stored in the database (with secrets) or exported/shown (without)."""
    return schema_helpers.dump_config(config, include_secrets=include_secrets)


class ChannelSpec(BaseModel):
    """Everything that defines a channel, as the form and the import submit it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=200, title="Name")
    enabled: bool = Field(True, title="Enabled")
    min_severity: Severity = Field(
        "info",
        title="Minimum severity",
        description="Events below this severity are not sent to this channel.",
    )
    cooldown_seconds: int = Field(
        0,
        ge=0,
        le=7 * 24 * 3600,
        title="Cooldown (seconds)",
        description="After a notification, stay quiet this long for the same stream; 0 = never.",
    )
    config: ChannelConfigUnion


def error_messages(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as {field path: message}, e.g. {"config.url": "must start with …"}.

    The union's kind tag is dropped from paths, so `config.webhook.url` reads `config.url`;
    errors that belong to no single field are under "config" or "" (the whole entry). Messages
    never contain the submitted value of a secret field (pydantic's messages do not echo input,
    and ours name only line numbers and schemes).
    """
    return schema_helpers.error_messages(exc, KINDS)


CHANNEL_FIELDS: tuple[str, ...] = tuple(n for n in ChannelSpec.model_fields if n != "config")
