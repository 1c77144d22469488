"""`glimpser doctor`, run as an operator runs it (a subprocess) against real Redis, SQLite,
PostgreSQL and S3 (moto's HTTP server): all ok, a second host with another secret key, an
unreachable Redis, an unmigrated or newer database, a wrong bucket, a bad setting."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from glimpser import db
from glimpser.doctor import FINGERPRINT_KEY, secret_key_fingerprint
from glimpser.models import Setting
from tests.conftest import make_env
from tests.helpers import free_port, run_cli
from tests.test_storage import aws_env, moto_endpoint, s3_bucket  # noqa: F401 - fixtures

KEY_A = "test-secret-key-0123456789abcdef"  # make_env's
KEY_B = "another-host-secret-key-fedcba9876543210"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process."""
    return run_cli(args, env, timeout=180)


def report(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """{check name: (status, message)} from the doctor's lines."""
    lines = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition(" ")
        name, _, message = rest.strip().partition(": ")
        lines[name] = (status, message)
    return lines


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback anywhere: every problem is a line of the report."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


def migrate(env: dict[str, str]) -> None:
    done = run(["migrate"], env)
    assert done.returncode == 0, done.stderr


def test_all_ok_on_a_migrated_database(tmp_path: Path, redis_url: str, database_url: str):
    env = make_env(tmp_path / "a", redis_url, database_url)
    migrate(env)
    # `glimpser migrate` recorded the deployment's fingerprint (not the key).
    handle = db.init_database(database_url)
    with handle.connection_context():
        stored = Setting.get(Setting.key == FINGERPRINT_KEY).value
    assert stored["fingerprint"] == secret_key_fingerprint(KEY_A)
    assert KEY_A not in repr(stored)
    result = run(["doctor"], env)
    assert_clean(result)
    assert result.returncode == 0, result.stdout
    checks = report(result)
    for name in ("settings", "database", "schema", "secret key", "redis", "storage"):
        assert checks[name][0] == "ok", (name, checks[name])
    for name in ("ffmpeg", "chromium"):  # both are installed on these machines
        assert checks[name][0] == "ok", (name, checks[name])
    assert checks["ffmpeg"][1].startswith("ffmpeg version")
    # The clocks are this machine's: never FAIL (ok or, on a badly stalled machine, warn).
    assert checks["redis clock"][0] in ("ok", "warn")
    assert checks["database clock"][0] in ("ok", "warn")
    assert checks["redis"][1].startswith("Redis ")
    kind = "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"
    assert checks["database"][1].startswith(kind)
    # The fingerprint is recorded (by migrate), shown, and the key is nowhere.
    fingerprint = secret_key_fingerprint(KEY_A)
    assert fingerprint in checks["secret key"][1]
    assert KEY_A not in result.stdout + result.stderr
    # The storage probe leaves nothing behind.
    snapshots = tmp_path / "a" / "snapshots"
    assert not [p for p in snapshots.rglob("*") if p.is_file()]


def test_a_second_host_with_another_secret_key_fails(
    tmp_path: Path, redis_url: str, database_url: str
):
    first = make_env(tmp_path / "host-a", redis_url, database_url)
    migrate(first)
    assert run(["doctor"], first).returncode == 0
    second = make_env(tmp_path / "host-b", redis_url, database_url, GLIMPSER_SECRET_KEY=KEY_B)
    result = run(["doctor"], second)
    assert_clean(result)
    assert result.returncode == 1
    status, message = report(result)["secret key"]
    assert status == "FAIL"
    assert secret_key_fingerprint(KEY_A) in message and secret_key_fingerprint(KEY_B) in message
    assert KEY_A not in result.stdout and KEY_B not in result.stdout
    # The first host's record stands: the first host still passes.
    assert report(run(["doctor"], first))["secret key"][0] == "ok"
    # After a deliberate change of the key everywhere, the operator records the new one.
    accepted = run(["doctor", "--accept-secret-key"], second)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert secret_key_fingerprint(KEY_B) in accepted.stdout
    assert report(run(["doctor"], first))["secret key"][0] == "FAIL"


def test_a_host_without_a_secret_key_generates_its_own_and_fails(
    tmp_path: Path, redis_url: str, database_url: str
):
    migrate(make_env(tmp_path / "host-a", redis_url, database_url))
    # Unset (empty wins over the test runner's environment): the host generates its own key.
    env = make_env(tmp_path / "host-b", redis_url, database_url, GLIMPSER_SECRET_KEY="")
    result = run(["doctor"], env)
    assert_clean(result)
    assert result.returncode == 1
    assert report(result)["secret key"][0] == "FAIL"


def test_unreachable_redis_is_a_fail_line_not_a_traceback(tmp_path: Path, database_url: str):
    env = make_env(tmp_path, f"redis://127.0.0.1:{free_port()}/0", database_url)
    migrate(env)
    result = run(["doctor"], env)
    assert_clean(result)
    assert result.returncode == 1
    checks = report(result)
    status, message = checks["redis"]
    assert status == "FAIL" and message.startswith("cannot reach Redis at redis://127.0.0.1:")
    assert "redis clock" not in checks
    # The other checks still ran.
    assert checks["schema"][0] == "ok" and checks["storage"][0] == "ok"


def test_redis_password_is_not_printed(tmp_path: Path, database_url: str):
    port = free_port()
    env = make_env(tmp_path, f"redis://:hunter2-secret@127.0.0.1:{port}/0", database_url)
    result = run(["doctor"], env)
    assert_clean(result)
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert report(result)["redis"][0] == "FAIL"


def test_an_unmigrated_database_fails_with_run_glimpser_migrate(
    tmp_path: Path, redis_url: str, database_url: str
):
    result = run(["doctor"], make_env(tmp_path, redis_url, database_url))
    assert_clean(result)
    assert result.returncode == 1
    checks = report(result)
    assert checks["database"][0] == "ok"
    status, message = checks["schema"]
    assert status == "FAIL" and message.endswith("run glimpser migrate")
    assert checks["secret key"][0] == "FAIL"


def test_a_database_newer_than_this_code_fails(tmp_path: Path, redis_url: str, database_url: str):
    env = make_env(tmp_path, redis_url, database_url)
    migrate(env)
    handle = db.init_database(database_url)
    with handle.connection_context():
        handle.execute_sql(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, %s, %s)"
            if not database_url.startswith("sqlite")
            else "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, ?, ?)",
            ("from_the_future", "2026-12-03T00:00:00.000000+00:00"),
        )
    result = run(["doctor"], env)
    assert_clean(result)
    assert result.returncode == 1
    status, message = report(result)["schema"]
    assert status == "FAIL" and "this host runs older code" in message and "9999" in message


def test_unreachable_database_is_a_fail_line(tmp_path: Path, redis_url: str):
    url = f"postgresql://glimpser:pw-not-shown@127.0.0.1:{free_port()}/glimpser"
    result = run(["doctor"], make_env(tmp_path, redis_url, url))
    assert_clean(result)
    assert result.returncode == 1
    checks = report(result)
    assert checks["database"][0] == "FAIL" and "cannot open database" in checks["database"][1]
    assert "pw-not-shown" not in result.stdout + result.stderr
    assert checks["redis"][0] == "ok"


def test_a_bad_setting_is_a_fail_line(tmp_path: Path, redis_url: str):
    result = run(["doctor"], make_env(tmp_path, redis_url, GLIMPSER_STORAGE="ftp"))
    assert_clean(result)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "FAIL  settings: GLIMPSER_STORAGE='ftp' is not 'local' or 's3'"
    ]


def s3_env(tmp_path: Path, redis_url: str, endpoint: str, bucket: str) -> dict[str, str]:
    return make_env(
        tmp_path,
        redis_url,
        None,
        GLIMPSER_STORAGE="s3",
        GLIMPSER_S3_BUCKET=bucket,
        GLIMPSER_S3_PREFIX="glimpser/snaps",
        GLIMPSER_S3_ENDPOINT_URL=endpoint,
        GLIMPSER_S3_REGION="us-east-1",
    )


def test_s3_probe_ok_and_leaves_nothing(
    tmp_path: Path,
    redis_url: str,
    moto_endpoint: str,  # noqa: F811
    s3_bucket: str,  # noqa: F811
):
    import boto3

    env = s3_env(tmp_path, redis_url, moto_endpoint, s3_bucket)
    migrate(env)
    result = run(["doctor"], env)
    assert_clean(result)
    assert result.returncode == 0, result.stdout
    status, message = report(result)["storage"]
    assert status == "ok" and f"s3://{s3_bucket}/glimpser/snaps" in message
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0


def test_s3_wrong_bucket_fails(
    tmp_path: Path,
    redis_url: str,
    moto_endpoint: str,  # noqa: F811
    aws_env: None,  # noqa: F811
):
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:12]}"
    env = s3_env(tmp_path, redis_url, moto_endpoint, bucket)
    migrate(env)
    result = run(["doctor"], env)
    assert_clean(result)
    assert result.returncode == 1
    status, message = report(result)["storage"]
    assert status == "FAIL" and bucket in message and "NoSuchBucket" in message


def test_missing_chromium_is_a_warning_naming_website_streams(tmp_path: Path, redis_url: str):
    env = make_env(tmp_path, redis_url, GLIMPSER_CHROMIUM="/nonexistent/chromium")
    migrate(env)
    result = run(["doctor"], env)
    assert_clean(result)
    assert result.returncode == 0
    status, message = report(result)["chromium"]
    assert status == "warn" and "website streams" in message


def test_clock_skew_thresholds():
    """The product thresholds (warn above 2 s, FAIL above 30 s), on given skews: no clock read."""
    from glimpser.doctor import _skew_check

    assert _skew_check("redis clock", "Redis", 0.4).status == "ok"
    warned = _skew_check("redis clock", "Redis", 5.0)
    assert warned.status == "warn" and "5.0 s ahead of" in warned.message
    failed = _skew_check("database clock", "PostgreSQL", -45.0)
    assert failed.status == "FAIL" and "45.0 s behind" in failed.message
    assert failed.line().startswith("FAIL  database clock: PostgreSQL's clock")
