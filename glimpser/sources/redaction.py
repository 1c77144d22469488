"""URLs with their secrets masked, for text that viewers or exports see.

A source URL may carry a password (user:password@host) or a token in its query
(?token=…, ?api_key=…, &sig=…). `redact_url` masks both; `redact_urls` does so for every URL in
a text (an error message). Used where a URL leaves the admin's hands: the stream's last error
(shown to viewers), failure events, and exports without secrets.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameter names whose value is a secret (matched anywhere in the lower-cased name).
_SECRET_PARAM = re.compile(
    r"token|key|secret|pass|pwd|auth|sig|credential|session|cred|ticket|bearer|jwt|otp"
)
# A URL in running text: scheme://, then anything up to white space or a quote/bracket.
# No nested quantifiers: linear in the text's length.
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{0,15}://[^\s'\"<>()\[\]{}]*")
# Text is cut to this before searching (error messages are short; a long one is cut anyway).
MAX_TEXT = 20_000


def redact_url(url: str) -> str:
    """The URL with userinfo masked (user kept) and secret-looking query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if user else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(name.lower()) for name, _ in pairs):
            query = urlencode(
                [(n, MASK if _SECRET_PARAM.search(n.lower()) else v) for n, v in pairs],
                safe="*",
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_urls(text: str) -> str:
    """Text with every URL in it passed through `redact_url`."""

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        trailing = len(url) - len(url.rstrip(".,;:!?"))  # sentence punctuation after a URL
        return redact_url(url[: len(url) - trailing]) + url[len(url) - trailing :]

    return _URL_IN_TEXT.sub(one, text[:MAX_TEXT])


def unmask(submitted: object, stored: object) -> object:
    """The stored URL (or list of URLs) where `submitted` is exactly its redacted form, as an
    export without secrets wrote it: importing that export back keeps the real URLs."""
    if isinstance(submitted, str) and isinstance(stored, str):
        return stored if MASK in submitted and redact_url(stored) == submitted else submitted
    if isinstance(submitted, list) and isinstance(stored, list):
        originals = {redact_url(s): s for s in stored if isinstance(s, str)}
        return [originals.get(v, v) if isinstance(v, str) and MASK in v else v for v in submitted]
    return submitted
