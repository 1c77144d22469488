"""`/docs/api`: the API's OpenAPI document, browsable for signed-in users (vendored assets).

Swagger UI (static/vendor/swagger-ui/, from the npm package swagger-ui-dist) renders
`/api/v1/openapi.json`; static/api_docs.js starts it (no inline script: the CSP forbids one).
Its "Try it out" sends real requests with the key pasted in its Authorize dialog, never with
the browser's session (the API reads no cookie). The page is its own document, not a child of
base.html: Pico's element styles would restyle Swagger UI's buttons, inputs and tables.
"""

from __future__ import annotations

from flask import Blueprint, render_template, url_for

bp = Blueprint("api_docs", __name__, url_prefix="/docs/api")


@bp.get("")
def index() -> str:
    """Any signed-in user (the default policy requires a session for this endpoint)."""
    return render_template("api_docs.html", spec_url=url_for("api.openapi"))
