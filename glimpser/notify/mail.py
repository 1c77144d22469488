"""Email over SMTP: a text and an HTML alternative, the snapshot attached as image/jpeg.

The HTML is rendered by Jinja with autoescaping, so event text (which can come from a watched
web page or an AI description) is always escaped. Security: "tls" (SMTP over TLS, port 465),
"starttls" (upgrade required: a server that does not offer it is an error, never a silent
plain-text fallback) or "none" (local relays). Certificates are verified.

Failures: SMTP 4xx replies and connection problems are temporary (retryable); 5xx replies are
permanent (bad credentials, refused recipients, ...). The password never appears in errors.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import redis
from jinja2 import Environment

from glimpser.config import Settings
from glimpser.models import Delivery, Event, NotificationChannel
from glimpser.notify.dispatch import SendError, SendResult
from glimpser.notify.message import Message
from glimpser.notify.schemas import ChannelConfig, EmailConfig
from glimpser.notify.senders import (
    SendContext,
    check_host,
    missing_secrets_error,
    scrub,
    send_event,
    short,
)

_jinja = Environment(autoescape=True)  # autoescape for every template made here

HTML_TEMPLATE = _jinja.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ m.title }}</title></head>
<body style="font-family: sans-serif; line-height: 1.4">
<h1 style="font-size: 1.25em">{{ m.title }}</h1>
<p>{{ m.body }}</p>
<table cellpadding="4" style="border-collapse: collapse">
<tr><th align="left">Stream</th><td>{{ m.stream_name or "-" }}</td></tr>
<tr><th align="left">Severity</th><td>{{ m.severity }}</td></tr>
<tr><th align="left">Kind</th><td>{{ m.kind }}</td></tr>
<tr><th align="left">Time</th><td>{{ created }}</td></tr>
</table>
{% if m.url %}<p><a href="{{ m.url }}">Open the event in Glimpser</a></p>{% endif %}
{% if attached %}<p>The snapshot is attached.</p>{% endif %}
</body></html>
"""
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def plain_text(message: Message, created: str, attached: bool) -> str:
    """The text/plain part (plain text: nothing in it is interpreted, so nothing to escape)."""
    lines = [
        message.title,
        "",
        message.body,
        "",
        f"Stream: {message.stream_name or '-'}",
        f"Severity: {message.severity}",
        f"Kind: {message.kind}",
        f"Time: {created}",
    ]
    if message.url:
        lines.append(f"Open: {message.url}")
    if attached:
        lines.append("The snapshot is attached.")
    return "\n".join(lines) + "\n"


def build_email(config: EmailConfig, message: Message) -> EmailMessage:
    """The complete email: headers, text + HTML alternatives, snapshot attachment."""
    attached = config.attach_snapshot and message.image is not None
    created = message.created_at.isoformat(timespec="seconds")
    email = EmailMessage()
    subject = _one_line(message.title)
    email["Subject"] = f"{config.subject_prefix} {subject}" if config.subject_prefix else subject
    email["From"] = config.from_addr
    email["To"] = ", ".join(config.to)
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = make_msgid("glimpser", domain=config.from_addr.rsplit("@", 1)[1])
    email["X-Glimpser-Event"] = str(message.event_id)
    email.set_content(plain_text(message, created, attached))
    email.add_alternative(
        HTML_TEMPLATE.render(m=message, created=created, attached=attached), subtype="html"
    )
    if attached:
        assert message.image is not None
        email.add_attachment(
            message.image,
            maintype="image",
            subtype="jpeg",
            filename=message.image_name or "snapshot.jpg",
        )
    return email


def _smtp_error(exc: smtplib.SMTPException, password: str) -> SendError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        retryable = any(400 <= c < 500 for c in codes)
        refused = ", ".join(
            f"{addr} ({code})" for addr, (code, _) in sorted(exc.recipients.items())
        )
        return SendError(
            f"the SMTP server refused every recipient: {refused}",
            retryable=retryable,
            status_code=codes[0] if codes else None,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SendError(
            f"the SMTP server does not support this: {short(str(exc))}", retryable=False
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        reply = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        what = "login failed" if isinstance(exc, smtplib.SMTPAuthenticationError) else "SMTP error"
        return SendError(
            f"{what}: the server answered {code} {short(scrub(reply, [password]))}",
            retryable=400 <= code < 500,
            status_code=code,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return SendError("the SMTP server closed the connection", retryable=True)
    return SendError(f"SMTP error ({type(exc).__name__})", retryable=True)


def send(config: ChannelConfig, message: Message, ctx: SendContext) -> SendResult:
    """Hand the email to the SMTP server once."""
    assert isinstance(config, EmailConfig)
    missing = missing_secrets_error(config)
    if missing:
        raise missing
    check_host(config.host, config.port, ctx)
    email = build_email(config, message)
    password = config.secret_value("password")
    context = ssl.create_default_context()
    target = f"the SMTP server {config.host}:{config.port}"
    try:
        if config.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        try:
            if config.security == "starttls":
                smtp.starttls(context=context)  # raises when the server does not offer it
            if config.username:
                smtp.login(config.username, password)
            refused = smtp.send_message(email, from_addr=config.from_addr, to_addrs=config.to)
        finally:
            # Once the message is accepted it counts as sent: a failing QUIT must not make the
            # delivery retry (and the mail arrive twice).
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()
    except smtplib.SMTPException as exc:
        raise _smtp_error(exc, password) from None
    except ssl.SSLCertVerificationError as exc:
        raise SendError(
            f"{target}: its TLS certificate is not valid ({exc.verify_message})", retryable=False
        ) from None
    except ssl.SSLError as exc:
        raise SendError(
            f"{target}: TLS failed ({exc.reason or 'handshake'})", retryable=True
        ) from None
    except TimeoutError:
        raise SendError(
            f"{target} did not answer within {config.timeout} s", retryable=True
        ) from None
    except OSError as exc:
        raise SendError(
            f"could not connect to {target} ({exc.strerror or type(exc).__name__})",
            retryable=True,
        ) from None
    detail = f"accepted for {len(config.to) - len(refused)} of {len(config.to)} recipients"
    if refused:
        detail += "; refused: " + ", ".join(
            f"{addr} ({code})" for addr, (code, _) in sorted(refused.items())
        )
    return SendResult(status_code=250, detail=detail)


Config = EmailConfig


def deliver(
    channel: NotificationChannel,
    event: Event,
    delivery: Delivery,
    settings: Settings,
    connection: redis.Redis,
) -> SendResult:
    """One attempt for one delivery (the dispatcher's entry; see glimpser.notify.registry)."""
    return send_event(send, channel, event, delivery, settings)
