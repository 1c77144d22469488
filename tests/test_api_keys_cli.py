"""`glimpser api-key create|list|revoke`, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import re

from glimpser import db
from glimpser.auth import api_keys
from glimpser.models import ApiKey, AuditLog, Stream, StreamAccess
from tests.api_support import ApiClient
from tests.conftest import make_env
from tests.helpers import run_cli

KEY = re.compile(r"glp_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def _world(database_url: str) -> dict[str, int]:
    """alice (admin), vera (viewer, granted Porch), the streams Porch and Garden."""
    from glimpser.auth.users import create_user

    database = db.init_database(database_url)
    db.migrate()
    with database.connection_context():
        create_user("alice", None, "admin")
        vera = create_user("vera", None, "viewer")
        porch = Stream.create(
            name="Porch",
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.0.2.1/"},
        )
        garden = Stream.create(
            name="Garden",
            kind="http_image",
            config={"kind": "http_image", "url": "http://192.0.2.1/"},
        )
        StreamAccess.create(user=vera, stream=porch)
    return {"porch": porch.id, "garden": garden.id}


def test_create_prints_only_the_key_and_list_and_revoke_work(
    tmp_path, redis_url, database_url, app_factory
):
    env = make_env(tmp_path / "data", redis_url, database_url)
    ids = _world(database_url)
    made = run_cli(
        [
            "api-key",
            "create",
            "vera",
            "--scope",
            "read",
            "--scope",
            "write",
            "--name",
            "Home Assistant",
            "--expires-days",
            "30",
            "--stream",
            "Porch",
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert KEY.fullmatch(token), made.stdout  # stdout is the key and nothing else
    assert made.stdout == token + "\n"
    assert "vera" in made.stderr and token not in made.stderr
    prefix = api_keys.parse_prefix(token)

    with db.database.connection_context():
        key = ApiKey.get(ApiKey.prefix == prefix)
        assert (key.name, key.scopes, key.stream_ids) == (
            "Home Assistant",
            ["read", "write"],
            [ids["porch"]],
        )
        assert key.expires_at is not None and key.secret_hash == api_keys.hash_token(token)
        entry = AuditLog.get(AuditLog.action == "api_key.create")
        assert entry.user_id is None and entry.detail["via"] == "cli"

    app = app_factory(database_url)
    api = ApiClient(app, token)
    assert [s["name"] for s in api.get("/streams").json["items"]] == ["Porch"]

    listed = run_cli(["api-key", "list"], env)
    assert listed.returncode == 0, listed.stderr
    assert token not in listed.stdout and token[len("glp_") + 9 :] not in listed.stdout
    [header, row] = listed.stdout.strip().splitlines()
    assert header.split()[:5] == ["PREFIX", "OWNER", "NAME", "SCOPES", "STATE"]
    assert prefix in row and "vera" in row and "read,write" in row and "active" in row
    assert "Home Assistant" in row and " from " in row  # used just now, by the API call
    mine = run_cli(["api-key", "list", "--user", "alice"], env)
    assert mine.returncode == 0 and prefix not in mine.stdout

    revoked = run_cli(["api-key", "revoke", f"glp_{prefix}"], env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked vera's key {prefix}" in revoked.stdout
    assert api.get("/streams").status_code == 401
    assert "revoked" in run_cli(["api-key", "list"], env).stdout
    again = run_cli(["api-key", "revoke", prefix], env)
    assert again.returncode == 0 and "already revoked" in again.stdout
    with db.database.connection_context():
        entry = AuditLog.get(AuditLog.action == "api_key.revoke")
        assert entry.detail == {"prefix": prefix, "owner": "vera", "via": "cli"}


def test_create_by_stream_id_and_an_admin_key(tmp_path, redis_url):
    database_url = f"sqlite:///{tmp_path / 'g.db'}"
    env = make_env(tmp_path / "data", redis_url, database_url)
    ids = _world(database_url)
    made = run_cli(
        ["api-key", "create", "alice", "--scope", "admin", "--stream", str(ids["garden"])], env
    )
    assert made.returncode == 0, made.stderr
    with db.database.connection_context():
        key = ApiKey.get(ApiKey.prefix == api_keys.parse_prefix(made.stdout.strip()))
        assert key.scopes == ["admin"] and key.stream_ids == [ids["garden"]]
        assert key.expires_at is None


def test_errors_exit_non_zero_with_a_message_and_make_nothing(tmp_path, redis_url):
    database_url = f"sqlite:///{tmp_path / 'g.db'}"
    env = make_env(tmp_path / "data", redis_url, database_url)
    ids = _world(database_url)
    cases = [
        (["create", "nobody", "--scope", "read"], "no user named 'nobody'"),
        (["create", "vera", "--scope", "admin"], "admin or metrics scope"),
        (["create", "vera", "--scope", "root"], "Invalid value for '--scope'"),
        (["create", "vera"], "Missing option '--scope'"),
        (["create", "vera", "--scope", "read", "--expires-days", "٣"], "whole number"),
        (["create", "vera", "--scope", "read", "--expires-days", "0"], "from 1 to 3650"),
        (["create", "vera", "--scope", "read", "--expires-days", "99999"], "from 1 to 3650"),
        (["create", "vera", "--scope", "read", "--expires-days", str(2**63)], "whole number"),
        (["create", "vera", "--scope", "read", "--stream", "Garden"], "cannot see"),
        (["create", "vera", "--scope", "read", "--stream", str(ids["garden"])], "cannot see"),
        (["create", "vera", "--scope", "read", "--stream", str(2**63)], "no stream"),
        (["create", "vera", "--scope", "read", "--name", "x" * 101], "at most 100"),
        (["list", "--user", "nobody"], "no user named 'nobody'"),
        (["revoke", "deadbeef"], "no key with the prefix 'deadbeef'"),
        (["revoke", "nonsense!"], "is not a key prefix"),
        (["revoke", "٣٣٣٣٣٣٣٣"], "is not a key prefix"),
    ]
    for args, message in cases:
        result = run_cli(["api-key", *args], env)
        assert result.returncode != 0, (args, result.stdout)
        assert message in result.stderr, (args, result.stderr)
        assert result.stdout == "", args
    with db.database.connection_context():
        assert not ApiKey.select().exists()
    empty = run_cli(["api-key", "list"], env)
    assert empty.returncode == 0 and empty.stdout == "" and "no API keys" in empty.stderr
