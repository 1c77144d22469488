"""Admin → Users: the password policy, per-stream access by stream and by group, users'
roles, activation, passwords and deletion, the one-time set-password link, and the last
active admin (on SQLite and PostgreSQL where the database matters)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from glimpser import times
from glimpser.auth import access, users
from glimpser.auth.passwords import common_passwords, password_problem
from glimpser.db import database
from glimpser.models import (
    AuditLog,
    GroupAccess,
    PushSubscription,
    SetPasswordToken,
    Stream,
    StreamAccess,
    Summary,
    Timelapse,
    User,
)
from tests.conftest import make_env
from tests.helpers import PASSWORD, add_stream, csrf_from, form_post, login, run_cli, setup_admin

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r">(http://[^<]+/account/set-password/([^<]+))</textarea>")


def _admin(app):
    client = app.test_client()
    setup_admin(client, "alice", PASSWORD)
    return client


def _viewer(name: str = "bob", role: str = "viewer") -> User:
    with database.connection_context():
        return users.create_user(name, PASSWORD, role)


def _signed_in(app, name: str):
    client = app.test_client()
    assert login(client, name, PASSWORD).status_code == 302
    return client


def _audit_actions() -> list[str]:
    with database.connection_context():
        return [a.action for a in AuditLog.select().order_by(AuditLog.id)]


# --- password policy --------------------------------------------------------------------------


def test_the_password_policy_says_one_thing_per_rule():
    assert "at least 12" in password_problem("short pass")
    assert "username" in password_problem("my name is Carolyn!", "carolyn")
    assert "username" in password_problem("xxCAROLxx-long-enough", "carol")
    assert "common" in password_problem("QWERTY123456")
    assert "common" in password_problem("Password1234")
    assert password_problem("correct horse battery", "alice") is None
    assert "at most" in password_problem("x" * 1025)
    assert len(common_passwords()) > 150
    assert all(len(p) >= 12 for p in common_passwords())
    # Shipped in the package (a wheel includes it).
    assert "common_passwords.txt" in (ROOT / "pyproject.toml").read_text()


def test_setup_and_create_user_apply_the_policy(app):
    client = app.test_client()
    page = form_post(
        client,
        "/setup",
        data={"username": "alice", "password": "alice-is-here-1", "confirm": "alice-is-here-1"},
    )
    assert page.status_code == 400 and "must not be or contain the username" in page.get_data(
        as_text=True
    )
    with database.connection_context(), pytest.raises(users.UserError, match="common"):
        users.create_user("carol", "qwertyuiop123", "viewer")


# --- who sees which stream --------------------------------------------------------------------


def test_group_grants_follow_the_group_exactly(db_app):
    """Group "a" covers streams in "a" (any case), not "ab", not a name holding a quote."""
    _admin(db_app)
    bob = _viewer()
    add_stream("In a", groups=["x", "a"])
    add_stream("In A", groups=["A"])
    add_stream("In ab", groups=["ab"])
    add_stream("Quoted", groups=['q"a', 'a"'])
    add_stream("Percent", groups=["%", "_"])
    direct = add_stream("Direct")
    with database.connection_context():
        access.change_access(bob, grant_groups=["a"], grant_streams=[direct])
        names = {s.name for s in access.visible_streams(bob)}
        assert names == {"In a", "In A", "Direct"}
        access.change_access(bob, grant_groups=["%"])
        assert {s.name for s in access.visible_streams(bob)} == names | {"Percent"}
        # A stream that joins the group later is covered, one that leaves it no longer.
        later = Stream.create(name="Later", kind="video", config={}, groups=["yard", "a"])
        Stream.update(groups=["b"]).where(Stream.name == "In A").execute()
        names = {s.name for s in access.visible_streams(bob)}
        assert "Later" in names and "In A" not in names
        # Admins see everything.
        alice = User.get(User.username == "alice")
        assert access.visible_streams(alice).count() == Stream.select().count()
    viewer = _signed_in(db_app, "bob")
    assert viewer.get(f"/streams/{later.id}").status_code == 200
    listing = viewer.get("/streams/").get_data(as_text=True)
    assert "Later" in listing and "In ab" not in listing and "Quoted" not in listing


def test_the_user_page_grants_streams_and_groups(db_app):
    admin = _admin(db_app)
    bob = _viewer()
    garden = add_stream("Garden", groups=["yard"])
    add_stream("Porch", groups=["Yard", "front"])
    gate = add_stream("Gate")
    page = admin.get(f"/admin/users/{bob.id}").get_data(as_text=True)
    assert 'value="yard"' in page and 'value="front"' in page  # "Yard" is the same group
    response = form_post(
        admin,
        f"/admin/users/{bob.id}",
        f"/admin/users/{bob.id}/access",
        data={"groups": ["yard"], "stream_ids": [str(gate.id)]},
    )
    assert response.status_code == 302
    viewer = _signed_in(db_app, "bob")
    listing = viewer.get("/streams/").get_data(as_text=True)
    assert all(n in listing for n in ("Garden", "Porch", "Gate"))
    # Untick the group: only the direct grant is left.
    form_post(
        admin,
        f"/admin/users/{bob.id}",
        f"/admin/users/{bob.id}/access",
        data={"stream_ids": [str(gate.id)]},
    )
    assert viewer.get(f"/streams/{garden.id}").status_code == 404
    assert viewer.get(f"/streams/{gate.id}").status_code == 200
    with database.connection_context():
        grants = AuditLog.select().where(AuditLog.action.in_(["access.grant", "access.revoke"]))
        assert sorted((a.action, a.target) for a in grants) == [
            ("access.grant", "group:yard"),
            ("access.grant", f"stream:{gate.id}"),
            ("access.revoke", "group:yard"),
        ]
    listing = admin.get("/admin/users/").get_data(as_text=True)
    assert re.search(r">bob</a>.*?<td>1</td>", listing, re.S)


def test_the_stream_page_says_who_can_see_it_and_grants(app):
    admin = _admin(app)
    bob = _viewer()
    _viewer("carol")
    stream = add_stream("Garden", groups=["yard"])
    with database.connection_context():
        carol = User.get(User.username == "carol")
        access.change_access(carol, grant_groups=["Yard"])
    page = admin.get(f"/streams/{stream.id}").get_data(as_text=True)
    assert "Who can see this" in page and "carol</a> <small" in page and "(Yard)" in page
    response = form_post(
        admin,
        f"/streams/{stream.id}",
        f"/admin/users/streams/{stream.id}/grant",
        data={"user": str(bob.id)},
    )
    assert response.status_code == 302
    viewer = _signed_in(app, "bob")
    assert viewer.get(f"/streams/{stream.id}").status_code == 200
    assert "Who can see this" not in viewer.get(f"/streams/{stream.id}").get_data(as_text=True)
    form_post(
        admin,
        f"/streams/{stream.id}",
        f"/admin/users/streams/{stream.id}/revoke",
        data={"user": str(bob.id)},
    )
    assert viewer.get(f"/streams/{stream.id}").status_code == 404


def test_the_cli_grants_groups_through_the_same_rows(app, tmp_path, redis_url):
    _admin(app)
    _viewer()
    env = make_env(tmp_path / "data", redis_url)
    granted = run_cli(["grant", "bob", "--group", "yard"], env)
    assert granted.returncode == 0, granted.stderr
    with database.connection_context():
        row = GroupAccess.get()
        assert (row.user.username, row.group) == ("bob", "yard")
        entry = AuditLog.get(AuditLog.action == "access.grant")
        assert entry.target == "group:yard" and entry.detail["via"] == "cli"
    assert run_cli(["revoke", "bob", "--group", "YARD"], env).returncode == 0
    with database.connection_context():
        assert GroupAccess.select().count() == 0
    assert run_cli(["grant", "bob"], env).returncode == 2


# --- users: create, link, change, delete ------------------------------------------------------


def test_setup_admin_has_signed_in_and_a_typed_password_user_is_listed(app):
    admin = _admin(app)
    response = form_post(
        admin,
        "/admin/users/new",
        data={
            "username": "dave",
            "role": "viewer",
            "how": "password",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    assert response.status_code == 302
    listing = admin.get("/admin/users/").get_data(as_text=True)
    alice_row = re.search(r'id="user-1">(.*?)</tr>', listing, re.S).group(1)
    assert "<time datetime=" in alice_row and "never" not in alice_row  # /setup signed her in
    dave_row = re.search(r">dave</a>(.*?)</tr>", listing, re.S).group(1)
    assert "never" in dave_row
    assert _signed_in(app, "dave").get("/").status_code == 200


def test_a_one_time_link_sets_the_password_once(db_app):
    admin = _admin(db_app)
    response = form_post(
        admin, "/admin/users/new", data={"username": "erin", "role": "viewer", "how": "link"}
    )
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    link, token = LINK.search(response.get_data(as_text=True)).groups()
    secret = token.split(".", 1)[1]
    with database.connection_context():
        erin = User.get(User.username == "erin")
        row = SetPasswordToken.get(SetPasswordToken.user == erin.id)
        assert secret not in row.token_hash and len(row.token_hash) == 64
        assert all(secret not in str(a.detail) for a in AuditLog.select())
    # No password works before the link is used.
    assert login(db_app.test_client(), "erin", "").status_code != 302
    path = link.split("localhost", 1)[1]
    visitor = db_app.test_client()
    page = visitor.get(path)
    assert page.status_code == 200 and "erin" in page.get_data(as_text=True)
    weak = form_post(
        visitor, path, data={"password": "erin-erin-erin", "confirm": "erin-erin-erin"}
    )
    assert weak.status_code == 422 and "username" in weak.get_data(as_text=True)
    done = form_post(visitor, path, data={"password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    assert _signed_in(db_app, "erin").get("/").status_code == 200
    again = visitor.get(path)
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    for bogus in ("nope", "1.wrong", f"{2**63}.x", "٣.x", token + "x"):
        assert visitor.get(f"/account/set-password/{bogus}").status_code == 404, bogus
    # An expired link answers 410.
    with database.connection_context():
        new_token = users.make_set_password_link(erin.id)
        SetPasswordToken.update(expires_at=times.utcnow() - timedelta(seconds=1)).execute()
    expired = visitor.get(f"/account/set-password/{new_token}")
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    actions = _audit_actions()
    assert "user.password_link" in actions and "user.password_set" in actions


def test_changes_end_every_session_of_the_user(db_app):
    admin = _admin(db_app)
    bob = _viewer()
    detail = f"/admin/users/{bob.id}"

    def signed_out(client) -> bool:
        response = client.get("/")
        return response.status_code == 302 and "/login" in response.headers["Location"]

    viewer = _signed_in(db_app, "bob")
    assert form_post(admin, detail, f"{detail}/role", data={"role": "admin"}).status_code == 302
    assert signed_out(viewer)
    form_post(admin, detail, f"{detail}/role", data={"role": "viewer"})
    viewer = _signed_in(db_app, "bob")
    assert form_post(admin, detail, f"{detail}/deactivate").status_code == 302
    assert signed_out(viewer)
    assert login(db_app.test_client(), "bob", PASSWORD).status_code == 401
    form_post(admin, detail, f"{detail}/reactivate")
    viewer = _signed_in(db_app, "bob")
    new_password = "a brand new passphrase"
    response = form_post(
        admin,
        detail,
        f"{detail}/password",
        data={"password": new_password, "confirm": new_password},
    )
    assert response.status_code == 302 and signed_out(viewer)
    viewer = db_app.test_client()
    assert login(viewer, "bob", new_password).status_code == 302
    link = form_post(admin, detail, f"{detail}/link")
    assert link.status_code == 200 and LINK.search(link.get_data(as_text=True))
    assert signed_out(viewer)
    assert login(db_app.test_client(), "bob", new_password).status_code == 401
    with database.connection_context():
        entries = {
            a.action: a.detail for a in AuditLog.select().where(AuditLog.target == f"user:{bob.id}")
        }
    assert entries["user.update"]["changes"] == {"role": ["admin", "viewer"]}
    assert entries["user.deactivate"]["changes"] == {"active": [True, False]}
    assert "user.reactivate" in entries and "user.password_reset" in entries
    assert new_password not in str(entries)


def test_delete_says_what_happens_and_does_it(db_app):
    admin = _admin(db_app)
    bob = _viewer()
    stream = add_stream("Garden", groups=["yard"])
    now = datetime.now(UTC)
    with database.connection_context():
        access.change_access(bob, grant_streams=[stream], grant_groups=["yard"])
        PushSubscription.create(user=bob, endpoint="https://push.example/1", p256dh="k", auth="a")
        Summary.create(
            stream=stream,
            requested_by=bob,
            period="hour",
            window_start=now - timedelta(hours=1),
            window_end=now,
        )
        lapse = Timelapse.create(stream=stream, requested_by=bob, range_start=now, range_end=now)
        AuditLog.create(user=bob, action="auth.login")
    viewer = _signed_in(db_app, "bob")
    page = admin.get(f"/admin/users/{bob.id}/delete").get_data(as_text=True)
    assert "1 Web Push subscription is removed" in page
    assert "1 stream and 1 group" in page
    assert "summary they requested is deleted" in page and "timelapse they built stay" in page
    response = form_post(admin, f"/admin/users/{bob.id}/delete")
    assert response.status_code == 302
    assert viewer.get("/").status_code == 302
    with database.connection_context():
        assert not User.select().where(User.username == "bob").exists()
        assert PushSubscription.select().count() == 0
        assert StreamAccess.select().count() == 0 and GroupAccess.select().count() == 0
        assert Summary.select().count() == 0
        assert Timelapse.get_by_id(lapse.id).requested_by is None
        assert AuditLog.get(AuditLog.action == "auth.login").user is None
        assert AuditLog.get(AuditLog.action == "user.delete").detail["username"] == "bob"


# --- the last active admin --------------------------------------------------------------------


def test_the_last_active_admin_cannot_be_demoted_deactivated_or_deleted(db_app):
    admin = _admin(db_app)
    with database.connection_context():
        alice = User.get(User.username == "alice")
    detail = f"/admin/users/{alice.id}"
    page = admin.get(detail).get_data(as_text=True)
    assert "last active admin" in page and "cannot be made a viewer" in page
    before = _audit_actions()
    for url, data in (
        (f"{detail}/role", {"role": "viewer"}),
        (f"{detail}/deactivate", {}),
        (f"{detail}/delete", {}),
    ):
        response = form_post(admin, detail, url, data=data)
        assert response.status_code == 409, url
        assert "last active admin" in response.get_data(as_text=True)
    assert _audit_actions() == before  # a refused change leaves no audit entry
    with database.connection_context():
        alice = User.get_by_id(alice.id)
        assert (alice.role, alice.active) == ("admin", True)
        # A deactivated second admin does not count.
        carol = users.create_user("carol", PASSWORD, "admin")
        users.update_user(carol.id, active=False)
        with pytest.raises(users.LastAdminError):
            users.update_user(alice.id, role="viewer")


def test_two_admins_demoting_each_other_at_once_leave_one_admin(db_app):
    _admin(db_app)
    with database.connection_context():
        alice = User.get(User.username == "alice")
        carol = users.create_user("carol", PASSWORD, "admin")
    for _ in range(3):
        barrier = threading.Barrier(2)
        results: list[str] = []

        def demote(
            target: int, actor: int, barrier: threading.Barrier = barrier, results: list = results
        ) -> None:
            with database.connection_context():
                barrier.wait()
                try:
                    users.update_user(target, role="viewer", actor=User.get_by_id(actor))
                    results.append("ok")
                except users.LastAdminError:
                    results.append("refused")

        threads = [
            threading.Thread(target=demote, args=(alice.id, carol.id)),
            threading.Thread(target=demote, args=(carol.id, alice.id)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(results) == ["ok", "refused"]
        with database.connection_context():
            admins = User.select().where(User.role == "admin")
            assert admins.count() == 1
            # Back to two admins for the next round.
            User.update(role="admin").execute()


# --- bad input: a clear 4xx, nothing half-written ---------------------------------------------


def _state() -> tuple:
    """Everything the users forms could write."""
    with database.connection_context():
        return (
            [
                (u.username, u.role, u.active, u.session_epoch, u.password_hash)
                for u in User.select()
            ],
            sorted((a.user_id, a.stream_id) for a in StreamAccess.select()),
            sorted((g.user_id, g.group) for g in GroupAccess.select()),
            SetPasswordToken.select().count(),
            AuditLog.select().count(),
        )


def test_bad_input_on_every_users_form_is_a_4xx_with_nothing_written(app):
    admin = _admin(app)
    bob = _viewer()
    _viewer("carol", "admin")
    with database.connection_context():
        carol = User.get(User.username == "carol")
    stream = add_stream("Garden", groups=["yard"])
    token = csrf_from(admin.get("/admin/users/new").get_data(as_text=True))
    page = f"/admin/users/{bob.id}"
    big = str(2**63)
    cases = [
        # (url, form data, expected status)
        ("/admin/users/new", {"username": "x" * 1000, "role": "viewer", "how": "link"}, 400),
        ("/admin/users/new", {"username": "dan", "role": "root", "how": "link"}, 422),
        ("/admin/users/new", {"username": "dan", "role": ["viewer", "admin"], "how": "x"}, 422),
        ("/admin/users/new", {"username": "da n", "role": "viewer", "how": "link"}, 422),
        ("/admin/users/new", {"username": "bob", "role": "viewer", "how": "link"}, 422),
        (
            "/admin/users/new",
            {"username": "dan", "role": "viewer", "how": "password", "password": "short"},
            422,
        ),
        (f"{page}/role", {"role": "superuser"}, 422),
        (f"{page}/role", {"role": "x" * 100}, 400),
        (f"{page}/password", {"password": PASSWORD, "confirm": "different one here"}, 422),
        (f"{page}/password", {"password": "x" * 5000, "confirm": "x" * 5000}, 400),
        (f"{page}/password", {"password": "bob-bob-bob-bob", "confirm": "bob-bob-bob-bob"}, 422),
        (f"{page}/access", {"stream_ids": ["٣"]}, 422),
        (f"{page}/access", {"stream_ids": [big]}, 422),
        (f"{page}/access", {"stream_ids": ["999999"]}, 422),
        (f"{page}/access", {"stream_ids": [str(i) for i in range(1, 5003)]}, 422),
        (f"{page}/access", {"stream_ids": [str(stream.id)], "groups": ["g" * 65]}, 422),
        (f"{page}/access", {"stream_ids": [str(stream.id)], "groups": [" "]}, 422),
        (f"/admin/users/{carol.id}/access", {"groups": ["yard"]}, 409),  # an admin
        (f"/admin/users/{big}/role", {"role": "viewer"}, 404),
        ("/admin/users/999999/deactivate", {}, 404),
        (f"/admin/users/streams/{stream.id}/grant", {"user": "٣"}, 400),
        (f"/admin/users/streams/{stream.id}/grant", {"user": big}, 400),
        (f"/admin/users/streams/{stream.id}/grant", {"user": "999999"}, 404),
        (f"/admin/users/streams/{stream.id}/grant", {"user": str(carol.id)}, 409),
        ("/admin/users/streams/999999/grant", {"user": str(bob.id)}, 404),
    ]
    before = _state()
    for url, data, status in cases:
        response = admin.post(url, data={"csrf_token": token, **data})
        assert response.status_code == status, (url, data, response.status_code)
        assert _state() == before, (url, data)
    # Without the CSRF token nothing is done, even with good input.
    for url, data in (
        ("/admin/users/new", {"username": "dan", "role": "viewer", "how": "link"}),
        (f"{page}/role", {"role": "admin"}),
        (f"{page}/deactivate", {}),
        (f"{page}/access", {"groups": ["yard"]}),
        (f"{page}/link", {}),
        (f"{page}/delete", {}),
        (f"/admin/users/streams/{stream.id}/grant", {"user": str(bob.id)}),
    ):
        assert admin.post(url, data=data).status_code == 400, url
    assert _state() == before
    # A viewer may not use any of it, not even on their own account.
    viewer = _signed_in(app, "bob")
    vtoken = csrf_from(viewer.get("/").get_data(as_text=True))
    before = _state()
    for url, data in (
        ("/admin/users/new", {"username": "dan", "role": "admin", "how": "link"}),
        (f"{page}/role", {"role": "admin"}),
        (f"/admin/users/{carol.id}/deactivate", {}),
        (f"{page}/access", {"groups": ["yard"]}),
        (f"{page}/link", {}),
        (f"/admin/users/streams/{stream.id}/grant", {"user": str(bob.id)}),
    ):
        assert viewer.post(url, data={"csrf_token": vtoken, **data}).status_code == 403, url
    assert viewer.get("/admin/users/").status_code == 403
    assert _state() == before


def test_bad_input_on_the_set_password_link(app):
    _admin(app)
    bob = _viewer()
    with database.connection_context():
        token = users.make_set_password_link(bob.id)
    path = f"/account/set-password/{token}"
    visitor = app.test_client()
    csrf = csrf_from(visitor.get(path).get_data(as_text=True))
    before = _state()
    for data, status in (
        ({"password": "x" * 5000, "confirm": "x" * 5000}, 422),
        ({"password": PASSWORD, "confirm": PASSWORD + "!"}, 422),
        ({"password": "qwerty123456", "confirm": "qwerty123456"}, 422),
        ({"password": ["a", "b"], "confirm": "a"}, 422),
    ):
        response = visitor.post(path, data={"csrf_token": csrf, **data})
        assert response.status_code == status, data
    assert visitor.post(path, data={"password": PASSWORD, "confirm": PASSWORD}).status_code == 400
    assert _state() == before  # the link still works, nothing was set
    assert visitor.get(path).status_code == 200
