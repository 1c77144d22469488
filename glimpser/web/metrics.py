"""`/metrics` for Prometheus (docs/api.md, "Prometheus metrics").

The metrics themselves are glimpser.metrics (counters and histograms in Redis, gauges read at
scrape time). Access is decided here, not by the session-based policy (the endpoint is in
PUBLIC_ENDPOINTS, and glimpser.auth.sessions opens no cookie session on /metrics):

- `Authorization: Bearer <key>` of a usable API key with the `metrics` scope (or `admin`,
  which includes it) → 200;
- or a client address inside GLIMPSER_METRICS_ALLOW (addresses/CIDRs; behind a reverse proxy
  the address GLIMPSER_TRUSTED_PROXIES lets through) → 200, key or not;
- otherwise 401 when no key or a key that is unknown, revoked or expired (or its user
  deactivated) was sent, 403 when the key is good but lacks the scope.
"""

from __future__ import annotations

import ipaddress

import redis
from flask import Blueprint, Response, current_app, request

from glimpser import metrics as metric_store
from glimpser.api import problems
from glimpser.api.auth import bearer_token
from glimpser.api.spec import operation
from glimpser.auth import api_keys
from glimpser.web.app_settings import current_settings

bp = Blueprint("metrics", __name__)


def address_allowed(address: str | None, networks: tuple[str, ...]) -> bool:
    """Is the client address inside one of the allowed networks?"""
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def _refuse(status: int, title: str, detail: str) -> Response:
    resp = problems.response(status, title, detail)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="glimpser"'
    return resp


@bp.get("/metrics")
@operation(tags=["metrics"], errors=(401, 403), binary=("text/plain",))
def metrics() -> Response:
    """Prometheus metrics (text exposition format): needs a key with the `metrics` scope, or a
    client address in GLIMPSER_METRICS_ALLOW."""
    address = request.remote_addr or ""
    if not address_allowed(address, current_settings().metrics_allow):
        token = bearer_token()
        key = api_keys.authenticate(token) if token is not None else None
        if key is None:
            return _refuse(
                401,
                "Unauthorized",
                "Send an API key with the metrics scope as `Authorization: Bearer glp_…`, "
                "or scrape from an address in GLIMPSER_METRICS_ALLOW.",
            )
        if not api_keys.has_scope(key, "metrics"):
            return _refuse(403, "Forbidden", "This key does not have the metrics scope.")
        if not key.user.is_admin:  # e.g. demoted since: the metrics cover every stream
            return _refuse(403, "Forbidden", "Only an admin's key may read the metrics.")
        api_keys.note_use(key, address)
    connection: redis.Redis = current_app.extensions["glimpser.redis"]
    return Response(metric_store.render(connection), content_type=metric_store.CONTENT_TYPE)
