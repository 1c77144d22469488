"""The admin resources of /api/v1 — rules, channels, users and grants, system status — on
SQLite and PostgreSQL: the same checks and audit entries as the admin pages, secrets never
answered, bad input a 4xx with nothing written, and who may call what."""

from __future__ import annotations

import json

from glimpser.web.params import MAX_ID
from tests.api_support import ApiClient, api_as, make_key, make_user
from tests.helpers import add_stream

SECRET = "tok-SECRET-auth"
WEBHOOK = {
    "name": "Ops hook",
    "min_severity": "low",
    "cooldown_seconds": 60,
    "config": {
        "kind": "webhook",
        "url": "https://hooks.example.com/glimpser",
        "authorization": f"Bearer {SECRET}",
    },
}
RULE = {
    "name": "Porch motion",
    "applies_to": "all",
    "severity": "high",
    "conditions": {"changed": True},
    "schedule": {"timezone": "Europe/Berlin", "quiet": [{"days": [5, 6]}]},
}


def _rows(app, model, *where):
    from glimpser.db import database

    with app.app_context(), database.connection_context():
        query = model.select()
        return list(query.where(*where) if where else query)


def _actions(app) -> list[tuple[str, dict]]:
    from glimpser.models import AuditLog

    return [(e.action, e.detail) for e in _rows(app, AuditLog)]


def test_rules_crud_as_the_form_does(db_app):
    from glimpser.models import NotificationChannel, Rule

    admin = api_as(db_app, "alice")
    prefix = admin.token[4:12]
    before = [r["id"] for r in admin.get("/rules").json["items"]]  # a fresh install's default
    assert len(before) == len(_rows(db_app, Rule))
    created = admin.post("/rules", json=RULE)
    assert created.status_code == 201, created.get_data(as_text=True)
    rule = created.json
    assert rule["name"] == "Porch motion" and rule["severity"] == "high"
    assert rule["conditions"]["min_confidence"] == 0.6  # defaults filled in, as RuleSpec says
    assert rule["schedule"]["quiet"][0]["start"] == "00:00"
    assert admin.get(f"/rules/{rule['id']}").json == rule
    assert sorted(r["id"] for r in admin.get("/rules").json["items"]) == [*before, rule["id"]]

    changed = admin.put(f"/rules/{rule['id']}", json={**RULE, "severity": "critical"})
    assert changed.status_code == 200 and changed.json["severity"] == "critical"
    assert changed.json["id"] == rule["id"]

    # Bad bodies: 422 with field errors, nothing written.
    bad = {
        "no condition": ({**RULE, "name": "X", "conditions": {}}, "conditions"),
        "unknown enum": ({**RULE, "name": "X", "severity": "urgent"}, "severity"),
        "chosen nothing": ({**RULE, "name": "X", "applies_to": "chosen"}, ""),
        "huge stream id": (
            {**RULE, "name": "X", "applies_to": "chosen", "stream_ids": [2**63]},
            "stream_ids",
        ),
        "unknown channel": ({**RULE, "name": "X", "channels": [2**63 + 5]}, "channels"),
        "name taken": ({**RULE, "name": "PORCH MOTION"}, "name"),
        "unknown field": ({**RULE, "name": "X", "colour": "red"}, "colour"),
        "bad zone": ({**RULE, "name": "X", "schedule": {"timezone": "Mars/Base"}}, "schedule"),
        "nul": ({**RULE, "name": "X\x00"}, "name"),
    }
    for label, (body, field) in bad.items():
        answer = admin.post("/rules", json=body)
        assert answer.status_code == 422, (label, answer.get_data(as_text=True))
        assert answer.mimetype == "application/problem+json"
        fields = [e["field"] for e in answer.json["errors"]]
        assert any(f.startswith(field) for f in fields), (label, fields)
    assert len(_rows(db_app, Rule)) == len(before) + 1
    assert admin.put(f"/rules/{rule['id']}", json={**RULE, "conditions": {}}).status_code == 422
    assert _rows(db_app, Rule, Rule.id == rule["id"])[0].severity == "critical"

    # A channel that exists may be named.
    with db_app.app_context():
        from glimpser.db import database

        with database.connection_context():
            channel = NotificationChannel.create(name="c", kind="webpush", config={})
    ok = admin.put(f"/rules/{rule['id']}", json={**RULE, "channels": [channel.id]})
    assert ok.status_code == 200 and ok.json["channels"] == [channel.id]

    # Above the largest row id no route matches: 404 (GET) or 405 (werkzeug).
    assert admin.get(f"/rules/{2**63}").status_code == 404
    assert admin.put(f"/rules/{2**63}", json=RULE).status_code in (404, 405)
    path = f"/rules/{MAX_ID}"
    assert admin.get(path).status_code == 404
    assert admin.put(path, json=RULE).status_code == 404
    assert admin.delete(path).status_code == 404
    assert admin.delete(f"/rules/{rule['id']}").status_code == 204
    assert admin.get(f"/rules/{rule['id']}").status_code == 404
    actions = [(a, d.get("api_key")) for a, d in _actions(db_app) if a.startswith("rule.")]
    assert actions == [
        ("rule.create", prefix),
        ("rule.update", prefix),
        ("rule.update", prefix),
        ("rule.delete", prefix),
    ]


def test_channels_keep_secrets_write_only(db_app):
    from glimpser.models import AuditLog, Delivery, NotificationChannel

    admin = api_as(db_app, "alice")
    created = admin.post("/channels", json=WEBHOOK)
    assert created.status_code == 201, created.get_data(as_text=True)
    channel = created.json
    assert channel["secrets_set"] == ["authorization"]
    assert channel["config"]["url"] == "https://hooks.example.com/glimpser"
    seen = [created, admin.get("/channels"), admin.get(f"/channels/{channel['id']}")]

    def stored():
        return _rows(db_app, NotificationChannel, NotificationChannel.id == channel["id"])[0]

    # Left out: the stored secret stays. Named in remove_secrets: it goes.
    kept = admin.put(
        f"/channels/{channel['id']}",
        json={**WEBHOOK, "config": {**WEBHOOK["config"], "authorization": ""}},
    )
    seen.append(kept)
    assert kept.status_code == 200 and kept.json["secrets_set"] == ["authorization"]
    assert stored().config["authorization"] == f"Bearer {SECRET}"
    # A new destination does not get the stored secret: it must be sent again.
    moved = {**WEBHOOK, "config": {"kind": "webhook", "url": "https://elsewhere.example.org/"}}
    refused = admin.put(f"/channels/{channel['id']}", json=moved)
    seen.append(refused)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json["errors"]] == ["config.authorization"]
    assert stored().config["url"] == WEBHOOK["config"]["url"]
    unset = {**WEBHOOK, "config": {"kind": "webhook", "url": WEBHOOK["config"]["url"]}}
    removed = admin.put(
        f"/channels/{channel['id']}", json={**unset, "remove_secrets": ["authorization"]}
    )
    seen.append(removed)
    assert removed.status_code == 200 and removed.json["secrets_set"] == []
    assert stored().config["authorization"] == ""

    bad = {
        "required secrets": (
            {"name": "P", "config": {"kind": "pushover"}},
            "config.app_token",
        ),
        "ssrf target": (
            {"name": "M", "config": {"kind": "webhook", "url": "http://169.254.169.254/x"}},
            "config.url",
        ),
        "unknown kind": ({"name": "K", "config": {"kind": "carrier-pigeon"}}, "config"),
        "name taken": ({**WEBHOOK, "name": "ops HOOK"}, "name"),
        "bad severity": ({**WEBHOOK, "name": "S", "min_severity": "x"}, "min_severity"),
        "not a secret": ({**WEBHOOK, "name": "R", "remove_secrets": ["url"]}, "remove_secrets"),
    }
    for label, (body, field) in bad.items():
        answer = admin.post("/channels", json=body)
        seen.append(answer)
        assert answer.status_code == 422, (label, answer.get_data(as_text=True))
        assert field in [e["field"] for e in answer.json["errors"]], (label, answer.json)
    assert len(_rows(db_app, NotificationChannel)) == 1

    # Send test: a real event and one delivery, queued for the notify worker.
    sent = admin.post(f"/channels/{channel['id']}/test")
    assert sent.status_code == 202, sent.get_data(as_text=True)
    assert sent.json["status"] == "queued"
    delivery = _rows(db_app, Delivery, Delivery.id == sent.json["delivery_id"])[0]
    assert delivery.channel_id == channel["id"] and delivery.event_id == sent.json["event_id"]
    assert admin.post(f"/channels/{2**63}/test").status_code == 404

    for answer in seen:
        assert SECRET not in answer.get_data(as_text=True)
    # Nor in the audit log.
    assert SECRET not in json.dumps([e.detail for e in _rows(db_app, AuditLog)])
    assert admin.delete(f"/channels/{channel['id']}").status_code == 204
    assert admin.get(f"/channels/{channel['id']}").status_code == 404
    assert _rows(db_app, Delivery) == []
    actions = [a for a, _ in _actions(db_app) if a.startswith("channel.")]
    assert actions == [
        "channel.create",
        "channel.update",
        "channel.update",
        "channel.test",
        "channel.delete",
    ]


def test_users_and_grants(db_app):
    from glimpser.models import User

    admin = api_as(db_app, "alice")
    with db_app.app_context():
        porch, garden = add_stream("Porch", groups=["yard"]), add_stream("Garden")

    weak = admin.post("/users", json={"username": "vera", "role": "viewer", "password": "abc"})
    assert weak.status_code == 422
    assert [e["field"] for e in weak.json["errors"]] == ["password"]
    bad_name = admin.post("/users", json={"username": "v era", "password": "correct horse 1"})
    assert [e["field"] for e in bad_name.json["errors"]] == ["username"]
    bad_role = admin.post(
        "/users", json={"username": "vera", "role": "root", "password": "correct horse 1"}
    )
    assert bad_role.status_code == 422
    assert [u.username for u in _rows(db_app, User)] == ["alice"]

    password = "correct horse battery staple"
    created = admin.post("/users", json={"username": "vera", "password": password})
    assert created.status_code == 201, created.get_data(as_text=True)
    vera = created.json
    assert vera["role"] == "viewer" and vera["active"] and vera["has_password"]
    listed = admin.get("/users")
    for answer in (created, listed, admin.get(f"/users/{vera['id']}")):
        text = answer.get_data(as_text=True)
        assert password not in text and "argon2" not in text and "password_hash" not in text
    assert [u["username"] for u in listed.json["items"]] == ["alice", "vera"]
    taken = admin.post("/users", json={"username": "VERA", "password": password})
    assert taken.status_code == 422 and taken.json["errors"][0]["field"] == "username"

    # Grants: exactly what is sent; groups case-insensitively.
    url = f"/users/{vera['id']}/grants"
    assert admin.get(url).json == {"stream_ids": [], "groups": []}
    put = admin.put(url, json={"stream_ids": [garden.id], "groups": ["Yard"]})
    assert put.status_code == 200, put.get_data(as_text=True)
    assert put.json == {"stream_ids": [garden.id], "groups": ["Yard"]}
    assert admin.put(url, json={"stream_ids": [], "groups": ["yard"]}).json == {
        "stream_ids": [],
        "groups": ["Yard"],
    }
    gone = admin.put(url, json={"stream_ids": [porch.id, 2**63 + 1]})
    assert gone.status_code == 422 and gone.json["errors"][0]["field"] == "stream_ids"
    long_group = admin.put(url, json={"groups": ["x" * 65]})
    assert long_group.status_code == 422 and long_group.json["errors"][0]["field"] == "groups"
    assert admin.get(url).json == {"stream_ids": [], "groups": ["Yard"]}
    viewer_key = ApiClient(db_app, make_key(_rows(db_app, User, User.username == "vera")[0]))
    assert [s["name"] for s in viewer_key.get("/streams").json["items"]] == ["Porch"]
    alice_id = _rows(db_app, User, User.username == "alice")[0].id
    assert admin.put(f"/users/{alice_id}/grants", json={"groups": ["x"]}).status_code == 409

    # Role and activation; the last active admin keeps both.
    assert admin.patch(f"/users/{alice_id}", json={"role": "viewer"}).status_code == 409
    assert admin.patch(f"/users/{alice_id}", json={"active": False}).status_code == 409
    assert admin.delete(f"/users/{alice_id}").status_code == 409
    assert admin.patch(f"/users/{alice_id}", json={"role": "boss"}).status_code == 422
    deactivated = admin.patch(f"/users/{vera['id']}", json={"active": False})
    assert deactivated.status_code == 200 and deactivated.json["active"] is False
    assert viewer_key.get("/streams").status_code == 401  # her key ended with her
    promoted = admin.patch(f"/users/{vera['id']}", json={"role": "admin", "active": True})
    assert promoted.json["role"] == "admin" and promoted.json["active"]

    assert admin.get(f"/users/{2**63}").status_code == 404
    assert admin.get(f"/users/{2**63}/grants").status_code == 404
    path = f"/users/{MAX_ID}"
    assert admin.get(path).status_code == 404
    assert admin.patch(path, json={"active": True}).status_code == 404
    assert admin.delete(path).status_code == 404
    assert admin.get(path + "/grants").status_code == 404
    assert admin.put(path + "/grants", json={}).status_code == 404
    assert admin.delete(f"/users/{vera['id']}").status_code == 204
    assert admin.get(f"/users/{vera['id']}").status_code == 404
    prefix = admin.token[4:12]
    audited = [(a, d.get("api_key")) for a, d in _actions(db_app) if a.startswith(("user", "acc"))]
    assert ("user.create", prefix) in audited and ("access.grant", prefix) in audited
    assert ("access.revoke", prefix) in audited and ("user.deactivate", prefix) in audited
    assert ("user.update", prefix) in audited and ("user.delete", prefix) in audited


def test_system_status_is_real(db_app):
    admin = api_as(db_app, "alice")
    with db_app.app_context():
        add_stream("Porch")
    status = admin.get("/system")
    assert status.status_code == 200, status.get_data(as_text=True)
    body = status.json
    assert body["database_kind"] in ("SQLite", "PostgreSQL")
    assert body["database_error"] is None and body["redis_error"] is None
    assert body["redis_version"]
    assert {q["name"] for q in body["queues"]}
    assert "no worker is running" in body["problems"]  # none runs in this test: said so
    assert body["storage"]["total_count"] == 0 and body["storage_error"] is None
    assert body["versions"]["Glimpser"]


ADMIN_CALLS = [
    ("GET", "/rules", None),
    ("GET", "/rules/1", None),
    ("POST", "/rules", RULE),
    ("PUT", "/rules/1", RULE),
    ("DELETE", "/rules/1", None),
    ("GET", "/channels", None),
    ("GET", "/channels/1", None),
    ("POST", "/channels", WEBHOOK),
    ("PUT", "/channels/1", WEBHOOK),
    ("DELETE", "/channels/1", None),
    ("POST", "/channels/1/test", None),
]
ADMIN_SCOPE_CALLS = [
    ("GET", "/users", None),
    ("GET", "/users/1", None),
    ("POST", "/users", {"username": "x", "password": "correct horse battery"}),
    ("PATCH", "/users/1", {"active": True}),
    ("DELETE", "/users/1", None),
    ("GET", "/users/1/grants", None),
    ("PUT", "/users/1/grants", {"groups": []}),
    ("GET", "/system", None),
]


def _statuses(api: ApiClient, calls) -> dict[str, int]:
    return {
        f"{method} {path}": api.open(method, path, json=body).status_code
        for method, path, body in calls
    }


def test_who_may_call_the_admin_resources(db_app):
    from glimpser.models import Rule

    alice = make_user("alice", "admin")
    rules_before = len(_rows(db_app, Rule))
    viewer = make_user("vera")
    everything = ADMIN_CALLS + ADMIN_SCOPE_CALLS
    for scopes in (("read",), ("write",)):
        statuses = _statuses(ApiClient(db_app, make_key(viewer, *scopes)), everything)
        assert set(statuses.values()) == {403}, (scopes, statuses)
    anonymous = db_app.test_client()
    for method, path, body in everything:
        assert anonymous.open("/api/v1" + path, method=method, json=body).status_code == 401

    # An admin's key without the admin scope: rules and channels yes, users and system no.
    writer = ApiClient(db_app, make_key(alice, "write"))
    assert set(_statuses(writer, ADMIN_SCOPE_CALLS).values()) == {403}
    assert writer.get("/rules").status_code == 200
    assert writer.post("/rules", json=RULE).status_code == 201
    reader = ApiClient(db_app, make_key(alice, "read"))
    assert reader.get("/channels").status_code == 200
    assert reader.post("/channels", json=WEBHOOK).status_code == 403
    assert reader.get("/users").status_code == 403

    # Demoted to viewer: the admin-scoped key loses everything here.
    key = ApiClient(db_app, make_key(alice, "admin"))
    assert key.get("/users").status_code == 200
    bob = make_user("bob", "admin")
    ApiClient(db_app, make_key(bob, "admin")).patch(f"/users/{alice.id}", json={"role": "viewer"})
    assert set(_statuses(key, everything).values()) == {403}
    assert len(_rows(db_app, Rule)) == rules_before + 1


def test_the_admin_paths_are_in_the_openapi_document(app):
    doc = app.test_client().get("/api/v1/openapi.json").json
    paths = doc["paths"]
    expected = {
        "/api/v1/rules": {"get", "post"},
        "/api/v1/rules/{rule_id}": {"get", "put", "delete"},
        "/api/v1/channels": {"get", "post"},
        "/api/v1/channels/{channel_id}": {"get", "put", "delete"},
        "/api/v1/channels/{channel_id}/test": {"post"},
        "/api/v1/users": {"get", "post"},
        "/api/v1/users/{user_id}": {"get", "patch", "delete"},
        "/api/v1/users/{user_id}/grants": {"get", "put"},
        "/api/v1/system": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    create = paths["/api/v1/users"]["post"]
    assert "422" in create["responses"] and "201" in create["responses"]
    assert "409" in paths["/api/v1/users/{user_id}"]["patch"]["responses"]
    text = json.dumps(doc)
    assert "password_hash" not in text
    assert "problem+json" in json.dumps(paths["/api/v1/channels"]["post"]["responses"]["422"])
