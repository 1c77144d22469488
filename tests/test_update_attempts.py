"""Update attempts without a running `glimpser serve`: cancelling (before the first step, and a
running install command stopped), a step that fails, the guards of Admin → Updates' Apply,
Cancel and Roll back, and `glimpser update apply` installing for the next start when nothing
runs. The whole switch with running processes is tests/test_update_apply.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import glimpser
from glimpser.db import database
from glimpser.models import AuditLog
from glimpser.updates import attempts, install, installed, last_check
from glimpser.updates.attempts import Cancelled, Recorder
from glimpser.updates.client import check
from tests import updates_support
from tests.helpers import PASSWORD, csrf_from, login, setup_admin
from tests.updates_support import NEXT, ok, publish, settings_for

artifacts = updates_support.artifacts
repo = updates_support.repo

PAGE = "/admin/updates/"


def test_a_cancel_before_the_first_step_changes_nothing(tmp_path: Path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    attempt = attempts.new(settings, "update", NEXT, glimpser.__version__, "alice")
    assert attempts.request_cancel(settings, attempt.id)
    assert not install.prepare(settings, attempt, supervisor=None)
    done = attempts.load(settings, attempt.id)
    assert done.state == attempts.CANCELLED and "nothing was changed" in done.message
    assert [step.state for step in done.steps] == []  # not even the download began
    assert not list(install.downloads_dir(settings).glob("*.tar.gz"))
    assert installed.active_release(settings) is None
    assert not attempts.request_cancel(settings, attempt.id)  # ended: nothing to cancel
    assert "cancelled" in attempts.read_log(settings, attempt.id)


def test_a_cancel_stops_a_running_install_command(tmp_path: Path):
    settings = settings_for(tmp_path, "http://127.0.0.1:9", None)
    attempt = attempts.new(settings, "update", NEXT, glimpser.__version__, "alice")
    rec = Recorder(settings, attempt)
    marker = tmp_path / "child.pid"

    def cancel_once_running() -> None:  # the command is surely running when the cancel comes
        while not marker.exists() or not marker.read_text():
            time.sleep(0.05)
        attempts.request_cancel(settings, attempt.id)

    canceller = threading.Thread(target=cancel_once_running, daemon=True)
    canceller.start()
    with pytest.raises(Cancelled):
        install.run_logged(
            rec,
            [sys.executable, "-c", f"import os, time; open({str(marker)!r}, 'w').write("
             "str(os.getpid())); time.sleep(3600)"],
            timeout=7200,
        )  # fmt: skip
    canceller.join()
    with pytest.raises(ProcessLookupError):  # stopped and reaped, not left running
        os.kill(int(marker.read_text()), 0)


def test_a_release_no_longer_offered_fails_the_download_step(tmp_path: Path, repo, artifacts):
    ok(publish(repo, artifacts[NEXT]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    attempt = attempts.new(settings, "update", "9.9.9", glimpser.__version__, "alice")
    assert not install.prepare(settings, attempt, supervisor=None)
    done = attempts.load(settings, attempt.id)
    assert done.state == attempts.FAILED
    assert done.steps[0].name == "download" and done.steps[0].state == "failed"
    assert f"newest release is now {NEXT}, not 9.9.9" in done.message
    assert "Nothing was changed" in done.message


def test_apply_from_the_command_line_with_nothing_running_installs_for_the_next_start(
    tmp_path: Path, repo, artifacts
):
    ok(publish(repo, artifacts[NEXT]))
    settings = settings_for(tmp_path, repo["url"], repo["root"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GLIMPSER_")},
        "GLIMPSER_DATA_DIR": str(settings.data_dir),
        "GLIMPSER_UPDATE_URL": repo["url"],
        "GLIMPSER_UPDATE_ROOT": str(repo["root"]),
        "GLIMPSER_SECRET_KEY": "test-secret-key-0123456789abcdef",
    }
    cli = [sys.executable, "-m", "glimpser.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    result = subprocess.run(
        [*cli, "update", "apply", "--yes"], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no glimpser serve runs here" in result.stdout
    assert f"Glimpser {NEXT} is installed; `glimpser serve` starts it." in result.stdout
    release = installed.active_release(settings)
    assert release is not None and release.name.startswith(f"{NEXT}-")
    version = subprocess.run(
        installed.glimpser_command(release, "--version"),
        env={k: v for k, v in env.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert NEXT in version.stdout
    done = attempts.history(settings)[0]
    assert [s.name for s in done.steps] == [
        "download", "backup", "install", "check", "stop", "migrate", "switch"
    ]  # fmt: skip
    assert done.by == "command line"
    # The command is still the base installation's (an older version), but the version that
    # runs is NEXT's: nothing newer, so apply says so and changes nothing.
    again = subprocess.run(
        [*cli, "update", "apply", "--yes"], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and f"up to date ({NEXT})" in again.stdout, again.stdout
    assert len(attempts.history(settings)) == 1
    rollback = subprocess.run(
        [*cli, "update", "rollback", "--yes"], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert installed.active_release(settings) is None


def test_apply_cancel_and_rollback_are_refused_where_they_cannot_work(
    app_factory, redis_client, repo, artifacts
):
    """The test app's processes are not run by `glimpser serve`: no Apply button, and a
    forged post is a 409 with nothing queued; cancelling a switching attempt is a 409; a
    viewer gets 403 everywhere."""
    from glimpser.auth.users import create_user

    ok(publish(repo, artifacts[NEXT]))
    app = app_factory(GLIMPSER_UPDATE_URL=repo["url"], GLIMPSER_UPDATE_ROOT=str(repo["root"]))
    settings = app.extensions["glimpser.settings"]
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    with database.connection_context():
        last_check.store(check(settings))
        create_user("victor", PASSWORD, "viewer")
    page = admin.get(PAGE).get_data(as_text=True)
    assert f"Glimpser {NEXT} is available" in page
    assert 'id="apply-update"' not in page and 'id="not-managed"' in page
    token = csrf_from(page)
    answer = admin.post(PAGE + "apply", data={"csrf_token": token, "version": NEXT})
    assert answer.status_code == 409
    assert "not run by glimpser serve" in answer.get_data(as_text=True)
    assert admin.post(PAGE + "rollback", data={"csrf_token": token}).status_code == 409
    assert attempts.history(settings) == []

    switching = attempts.new(settings, "update", NEXT, glimpser.__version__, "command line")
    switching.state = attempts.SWITCHING
    attempts.save(settings, switching)
    url = f"{PAGE}attempts/{switching.id}/cancel"
    assert admin.post(url, data={"csrf_token": token}).status_code == 409
    assert admin.post(PAGE + "attempts/nope/cancel", data={"csrf_token": token}).status_code == 404
    assert admin.get(f"{PAGE}attempts/{switching.id}").status_code == 200
    assert admin.get(PAGE + "attempts/..%2Fsecret_key").status_code == 404
    assert 'hx-get="/admin/updates/progress"' in admin.get(PAGE).get_data(as_text=True)
    # Without a CSRF token nothing happens.
    assert admin.post(PAGE + "apply", data={"version": NEXT}).status_code == 400

    viewer = app.test_client()
    login(viewer, "victor", PASSWORD)
    vtoken = csrf_from(viewer.get("/").get_data(as_text=True))
    for url in (PAGE + "apply", PAGE + "rollback", f"{PAGE}attempts/{switching.id}/cancel"):
        assert viewer.post(url, data={"csrf_token": vtoken, "version": NEXT}).status_code == 403
    for url in (PAGE + "progress", f"{PAGE}attempts/{switching.id}"):
        assert viewer.get(url).status_code == 403
    with database.connection_context():
        assert not AuditLog.select().where(AuditLog.action.startswith("update.a")).exists()


def test_pruning_keeps_the_running_release_and_the_one_a_rollback_returns_to(tmp_path: Path):
    settings = settings_for(tmp_path, "http://127.0.0.1:9", None)
    folder = installed.releases_dir(settings)
    for name in ("0.2.0-a", "0.3.0-b", "0.4.0-c"):
        (folder / name / "venv" / "bin").mkdir(parents=True)
        (folder / name / "venv" / "bin" / "python").touch()
    installed.switch_to(settings, folder / "0.4.0-c")
    assert installed.active_release(settings) == (folder / "0.4.0-c").resolve()
    deleted = installed.prune(settings, {folder / "0.3.0-b", folder / "0.4.0-c"})
    assert deleted == ["0.2.0-a"]
    assert sorted(p.name for p in folder.iterdir()) == ["0.3.0-b", "0.4.0-c", "current"]
    installed.switch_to(settings, None)  # back to the base installation
    assert installed.active_release(settings) is None and not (folder / "current").exists()
