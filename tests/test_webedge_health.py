"""/readyz: the status for everyone, what is wrong only for admins; never a 500."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import PASSWORD, free_port, setup_admin


def test_anonymous_callers_get_the_status_only(app_factory):
    app = app_factory(GLIMPSER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not ready"}
    assert "Connection" not in response.get_data(as_text=True)


def test_admins_get_the_details(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    response = client.get("/readyz")
    assert response.get_json() == {"status": "ready", "database": "ok", "redis": "ok"}
    assert app.test_client().get("/readyz").get_json() == {"status": "ready"}


def test_an_unusable_database_is_a_503_not_a_500(app_factory, tmp_path: Path):
    db_file = tmp_path / "broken" / "glimpser.db"
    db_file.parent.mkdir()
    app = app_factory(f"sqlite:///{db_file}")
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    # The database file becomes something SQLite cannot open.
    shutil.rmtree(db_file.parent)
    db_file.mkdir(parents=True)
    for caller in (app.test_client(), client):
        for _ in range(3):
            response = caller.get("/readyz")
            assert response.status_code == 503
            body = response.get_json()
            assert body["status"] == "not ready"
            assert "database" not in body or "OperationalError" in body["database"]
            assert caller.get("/healthz").status_code == 200
