"""Applying updates end to end: `glimpser serve` running on a data directory with a stream that
captures from a loopback camera, a real TUF repository on loopback holding this checkout at a
bumped version, and the update applied as an admin does it (Admin → Updates' "Apply"), or from
the command line. The release is installed side by side by uv from its lock file, migrated,
switched to and verified; a release whose start-up fails is rolled back with the database
restored.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

import glimpser
from glimpser.config import load_settings
from glimpser.updates import attempts
from tests.helpers import ROOT, csrf_from, free_port, shoot_widths
from tests.media_servers import start_camera_server
from tests.updates_support import NEXT, artifacts, ok, publish, repo  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SHOTS = ROOT / "docs" / "screenshots"

SECRET = "test-secret-key-0123456789abcdef"
PASSWORD = "correct horse battery"
RUNNING = re.compile(r'"msg": "glimpser is running[^"]*", "url": "(http://[^"]+/)"')


def _until(what: str, check, limit: float = 300, every: float = 0.3):  # noqa: ANN001, ANN202
    """Poll until `check()` is truthy (the bound only ends a hung run; it asserts no speed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


class Install:
    """A data directory served by `glimpser serve`, with one admin and one loopback camera."""

    def __init__(self, tmp_path: Path, repo: dict) -> None:  # noqa: F811
        self.data_dir = tmp_path / "data"
        self.log = tmp_path / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSER_")}
        self.env.update(
            GLIMPSER_DATA_DIR=str(self.data_dir),
            GLIMPSER_PORT=str(free_port()),
            GLIMPSER_WORKERS="1",
            GLIMPSER_WEB_WORKERS="1",
            GLIMPSER_SECRET_KEY=SECRET,
            GLIMPSER_LOG_LEVEL="INFO",
            GLIMPSER_ALLOW_LOOPBACK_SOURCES="1",
            GLIMPSER_SECURE_COOKIES="0",  # plain http on loopback
            GLIMPSER_UPDATE_URL=repo["url"],
            GLIMPSER_UPDATE_ROOT=str(repo["root"]),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        self.settings = load_settings(self.env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def cli(self, *args: str, check: bool = True, stdin: str = "") -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "glimpser.cli", *args],
            input=stdin,
            env=self.env,
            cwd=self.data_dir.parent,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if check:
            ok(result)
        return result

    def start(self, camera_url: str) -> None:
        self.cli("create-user", "admin", "--role", "admin", stdin=PASSWORD + "\n")
        doc = self.data_dir.parent / "streams.json"
        doc.write_text(
            json.dumps(
                {
                    "format": "glimpser",
                    "streams": [
                        {
                            "name": "Porch",
                            "interval": 3600,
                            "config": {"kind": "http_image", "url": camera_url},
                        }
                    ],
                }
            )
        )
        self.cli("import", str(doc))
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "glimpser.cli", "serve"],
                cwd=self.data_dir.parent,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = _until("glimpser serve to run", self._announced)
        # The stream captures once (it is due when created): the capture check has its peer.
        _until("the first capture", lambda: self.stream()["last_success_at"])

    def _announced(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"glimpser serve exited:\n{self.log.read_text()}")
        found = RUNNING.search(self.log.read_text(errors="replace"))
        return found.group(1) if found else ""

    def stream(self) -> sqlite3.Row:
        with sqlite3.connect(self.data_dir / "glimpser.db") as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute("SELECT * FROM stream WHERE name = 'Porch'").fetchone()

    def tables(self) -> set[str]:
        with sqlite3.connect(self.data_dir / "glimpser.db") as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {row[0] for row in rows}

    def admin(self) -> requests.Session:
        session = requests.Session()
        page = session.get(f"{self.url}login", timeout=30)
        token = csrf_from(page.text)
        answer = session.post(
            f"{self.url}login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": token},
            timeout=30,
        )
        assert answer.ok, answer.text[:3000]
        return session

    def page_version(self, session: requests.Session) -> str:
        page = session.get(f"{self.url}admin/updates/", timeout=30)
        assert page.status_code == 200, page.text
        return re.search(r'id="current-version">([^<]+)<', page.text).group(1)

    def ended(self, attempt_id: str) -> attempts.Attempt | None:
        attempt = attempts.load(self.settings, attempt_id)
        return attempt if attempt is not None and not attempt.active else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        sock = self.data_dir / "redis.sock"
        if sock.exists():
            subprocess.run(
                ["redis-cli", "-s", str(sock), "shutdown", "nosave"],
                capture_output=True,
                timeout=30,
            )


@pytest.fixture
def install(tmp_path: Path, repo: dict):  # noqa: F811
    camera, _state = start_camera_server()
    served = Install(tmp_path, repo)
    try:
        served.start(f"{camera.url}/snapshot.jpg")
        yield served
    finally:
        served.stop()
        camera.stop()


def _shoot(page: Page, tmp_path: Path, name: str) -> None:
    shoot_widths(page, tmp_path, name, keep_in=SHOTS)
    page.set_viewport_size({"width": 1280, "height": 1000})


def test_an_update_applied_from_the_page_runs_the_new_version_and_rolls_back_on_request(
    install: Install,
    repo: dict,  # noqa: F811
    artifacts: dict,  # noqa: F811
    browser: Browser,
    tmp_path: Path,
):
    ok(publish(repo, artifacts[NEXT]))
    install.cli("update", "check")  # kept as the last check the page shows
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(install.url + "login")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(install.url + "admin/updates/")
        expect(page.locator("#current-version")).to_have_text(glimpser.__version__)
        expect(page.locator("#newest-release")).to_contain_text(f"Glimpser {NEXT} is available")
        # glimpser serve runs the processes here: "Apply" is offered, not the commands.
        expect(page.locator("#not-managed")).to_have_count(0)
        _shoot(page, tmp_path, "updates-apply")

        page.get_by_role("button", name=f"Apply {NEXT}").click()
        progress = page.locator("#update-progress")
        # The steps show as they happen (htmx polls through the restart) until it ends.
        expect(progress).to_contain_text("succeeded", timeout=600_000)
        done = attempts.history(install.settings)[0]
        log = attempts.read_log(install.settings, done.id)
        assert done.state == attempts.SUCCEEDED, f"{done.message}\n{log}"
        steps = {step.name: step for step in done.steps}
        assert list(steps) == [
            "download", "backup", "install", "check", "stop", "migrate", "switch", "start",
            "verify",
        ]  # fmt: skip
        assert all(step.state == "done" for step in done.steps)
        assert "verified against the signed metadata" in steps["download"].detail
        assert "stream 'Porch' captured" in steps["verify"].detail
        assert "--require-hashes" in log  # installed from the release's lock file
        assert done.by == "admin"

        # The page is now served by the new release's web process, and says so.
        page.reload()
        expect(page.locator("#current-version")).to_have_text(NEXT)
        expect(page.locator("#history")).to_contain_text(done.id)
        expect(page.locator("#rollback-form")).to_contain_text("keeps everything recorded")
        _shoot(page, tmp_path, "updates-done")
        page.get_by_role("link", name=f"Steps and log of {done.id}").click()
        expect(page.locator(".update-log")).to_contain_text("--require-hashes")
        _shoot(page, tmp_path, "update-attempt")
    finally:
        context.close()
    link = install.data_dir / "releases" / "current"
    assert link.is_symlink() and link.resolve() == Path(done.release_dir)
    with sqlite3.connect(install.data_dir / "glimpser.db") as connection:
        actions = [row[0] for row in connection.execute("SELECT action FROM audit_log")]
    assert "update.apply" in actions

    # Rolled back on request: the base installation runs again (no migration ran, so no
    # restore was needed and the stream is still there).
    result = install.cli("update", "rollback", "--yes")
    assert f"Glimpser {glimpser.__version__} runs" in result.stdout, result.stdout
    assert not link.exists()
    admin = install.admin()
    assert install.page_version(admin) == glimpser.__version__
    assert install.stream() is not None
    history = install.cli("update", "history").stdout
    assert f"rollback {NEXT} → {glimpser.__version__}  succeeded" in history
    assert f"update {glimpser.__version__} → {NEXT}  succeeded" in history


def _variant(artifact: Path, out: Path, files: dict[str, bytes]) -> Path:
    """A copy of a release archive with some files replaced or added (a broken release)."""
    with tarfile.open(artifact, "r:gz") as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None) for m in source]
    prefix = members[0][0].name.split("/")[0] + "/"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as dest:
        seen = set()
        for member, data in members:
            name = member.name.removeprefix(prefix)
            if name in files:
                data = files[name]
                member.size = len(data)
                seen.add(name)
            dest.addfile(member, io.BytesIO(data) if data is not None else None)
        for name in set(files) - seen:
            info = tarfile.TarInfo(prefix + name)
            info.size = len(files[name])
            info.mode = 0o644
            dest.addfile(info, io.BytesIO(files[name]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(buffer.getvalue()))
    return out


BROKEN_MIGRATION = b'''"""A table the broken release adds."""


def up(db):
    db.execute_sql("CREATE TABLE update_probe (id INTEGER PRIMARY KEY)")
'''


def test_a_release_whose_start_up_fails_is_rolled_back_with_the_database_restored(
    install: Install,
    repo: dict,  # noqa: F811
    artifacts: dict,  # noqa: F811
    tmp_path: Path,
):
    wsgi = (ROOT / "glimpser" / "wsgi.py").read_bytes()
    broken = _variant(
        artifacts[NEXT],
        tmp_path / "broken" / artifacts[NEXT].name,
        {
            "migrations/0099_update_probe.py": BROKEN_MIGRATION,
            # The web process of this release fails as it starts.
            "glimpser/wsgi.py": wsgi + b'\nraise RuntimeError("this release cannot start")\n',
        },
    )
    ok(publish(repo, broken))
    before = install.stream()

    result = install.cli("update", "apply", "--yes", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    done = attempts.history(install.settings)[0]
    log = attempts.read_log(install.settings, done.id)
    assert done.state == attempts.ROLLED_BACK, f"{done.message}\n{log}"
    steps = {step.name: step for step in done.steps}
    assert steps["migrate"].state == "done" and "99" in steps["migrate"].detail
    assert steps["verify"].state == "failed"
    assert "the web process exited" in steps["verify"].detail
    assert steps["restore backup"].state == "done"
    assert "restored" in done.message and "The verify step failed" in done.message
    assert "The verify step failed" in result.stdout

    # The database is the backup's: the release's table and migration are gone, the data stays.
    assert "update_probe" not in install.tables()
    with sqlite3.connect(install.data_dir / "glimpser.db") as connection:
        versions = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
    assert 99 not in versions
    assert install.stream()["id"] == before["id"]
    # The old release serves again, from the base installation.
    assert not (install.data_dir / "releases" / "current").exists()
    admin = install.admin()
    assert install.page_version(admin) == glimpser.__version__
    assert requests.get(f"{install.url}readyz", timeout=30).status_code == 200
