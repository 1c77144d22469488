"""Security headers on every response."""

from __future__ import annotations

from flask import Flask, Response, request

# No 'unsafe-inline' anywhere: scripts and styles come only from /static.
_IMG_SRC = "img-src 'self' data: blob:"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        _IMG_SRC,
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def content_security_policy(picture_origin: str | None = None) -> str:
    """The policy, allowing images also from `picture_origin` (the S3 endpoint that signed
    picture URLs redirect to, glimpser.web.pictures) when there is one."""
    if not picture_origin:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace(_IMG_SRC, f"{_IMG_SRC} {picture_origin}")


def install(app: Flask, picture_origin: str | None = None) -> None:
    policy = content_security_policy(picture_origin)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", policy)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.is_secure:
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
