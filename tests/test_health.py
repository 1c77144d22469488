"""Liveness and readiness."""

from __future__ import annotations

from tests.helpers import free_port, signed_in_admin


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(app):
    client = signed_in_admin(app)  # anonymous callers get the status only (test_webedge_*)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_down(app_factory):
    app = app_factory(GLIMPSER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not ready"}
