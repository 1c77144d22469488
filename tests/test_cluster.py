"""A cluster on one machine (deploy/cluster.py): two web hosts behind nginx, capture and
readers on two hosts, browser, analysis, maintenance and the scheduler on a third, notify on
two more, each with its own data directory, sharing only PostgreSQL, Redis and S3 (moto's
server). One cluster serves every test of this module, in order:

- a snapshot captured on one capture host is served by both web hosts through the proxy;
- a timelapse is built on the jobs host from S3 alone;
- kill -9 of the readers host holding an RTSP stream: the other readers host takes it;
- kill -9 of a capture host mid-capture: every stream keeps capturing, every snapshot row has
  its object in S3, no stream is left claimed by the dead job;
- kill -9 of a notify host mid-delivery: every notification reaches the receiver once; the
  one in flight is not sent again, and the sweep marks it "outcome unknown".

Each killed host is started again before the next test. Every wait polls for a condition; its
bound only ends a hung run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta

import boto3
import pytest
import redis as redis_lib
import requests

from deploy.cluster import Cluster, Shared
from glimpser import db, times
from glimpser.capture import leases, readers, scheduling
from glimpser.db import database
from glimpser.models import Delivery, Event, Snapshot, Stream, Timelapse
from glimpser.queues import get_queue
from tests.conftest import _new_postgres_database
from tests.faults_support import Receiver, SlowCamera, wait_until, webhook_rule
from tests.faults_support import reader_heartbeats as _heartbeats
from tests.helpers import PASSWORD, csrf_from, start_redis
from tests.media_servers import RtspServer
from tests.test_storage import moto_endpoint  # noqa: F401 - the session's moto server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

GUARD = 180.0  # seconds: ends a hung run on a loaded machine; never a performance bound
# The first snapshot of every stream waits for seven hosts to start on a loaded machine.
SETUP_GUARD = 360.0
CAPTURE_HOSTS = ("capture-a", "capture-b")
NOTIFY_HOSTS = ("notify-d", "notify-e")


class Env:
    """The running cluster and what the tests reach it with."""

    def __init__(self, cluster: Cluster, r: redis_lib.Redis, s3, bucket: str) -> None:  # noqa: ANN001
        self.cluster = cluster
        self.r = r
        self.s3 = s3
        self.bucket = bucket
        self.http = requests.Session()
        self.rtsp_ids: list[int] = []
        self.http_ids: list[int] = []
        self.camera: SlowCamera | None = None
        self.receiver: Receiver | None = None

    @property
    def stream_ids(self) -> list[int]:
        return self.rtsp_ids + self.http_ids

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.cluster.url + path, timeout=30)

    def post(self, path: str, data: dict, page: str) -> requests.Response:
        token = csrf_from(self.get(page).text)
        return self.http.post(
            self.cluster.url + path,
            data={"csrf_token": token, **data},
            headers={"Referer": self.cluster.url + page},
            allow_redirects=False,
            timeout=30,
        )

    def upstream(self, response: requests.Response) -> str | None:
        return self.cluster.upstream_name(response.headers.get("X-Cluster-Upstream", ""))

    # --- which host ran what ------------------------------------------------------------------

    def worker_hosts(self) -> dict[str, str]:
        """RQ worker name → the cluster host of its process (by PID)."""
        from rq import Worker

        found = {}
        for worker in Worker.all(connection=self.r):
            host = self.cluster.host_of_pid(int(worker.pid)) if worker.pid else None
            if host is not None:
                found[worker.name] = host
        return found

    def jobs(self, queue: str, registry: str) -> list:
        from rq.job import Job

        from glimpser.queues import get_queue

        reg = getattr(get_queue(queue, self.r), f"{registry}_job_registry")
        return [j for j in Job.fetch_many(reg.get_job_ids(), connection=self.r) if j is not None]

    def s3_objects(self, prefix: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found


def _snapshots(stream_id: int | None = None) -> list[Snapshot]:
    with database.connection_context():
        query = Snapshot.select().order_by(Snapshot.id)
        if stream_id is not None:
            query = query.where(Snapshot.stream == stream_id)
        return list(query)


def _why_not_captured(cluster: Cluster, stream_ids: list[int]) -> str:
    """What a failed setup needs to be understood once the cluster (and its logs) is gone: the
    streams without a snapshot and their state, and the end of the capture hosts' logs."""
    lines = []
    with database.connection_context():
        for stream in Stream.select().where(Stream.id.in_(stream_ids)):
            if not Snapshot.select().where(Snapshot.stream == stream.id).exists():
                lines.append(
                    f"stream {stream.id} {stream.kind}: state {stream.state!r}, "
                    f"next due {stream.next_due_at}, last error {stream.last_error!r}"
                )
    return "\n".join(lines + _log_tails(cluster, 15))


def _log_tails(cluster: Cluster, count: int) -> list[str]:
    """The last `count` lines of every log of the capture hosts and the jobs host."""
    lines = []
    for host in (*CAPTURE_HOSTS, "jobs-c"):
        for log in sorted(cluster.log_dir(host).glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-count:]
            lines += [f"--- {log.relative_to(cluster.base)}", *tail]
    return lines


def _cluster_state(env: Env) -> str:
    """What a failed wait needs to be understood once the cluster (and its logs) is gone: who
    holds each stream's lease and capture claim, what each readers process reports, the last
    snapshot of each stream, the workers by host, and the end of the capture hosts' logs."""
    lines = [f"now {times.utcnow()}"]
    beats = _heartbeats(env.r)
    for stream_id, owner in leases.holders(env.r, env.rtsp_ids).items():
        lines.append(f"stream {stream_id}: lease {owner}")
    for pid, beat in beats.items():
        host = env.cluster.host_of_pid(pid)
        lines.append(f"readers {pid} ({host}): {beat['streams']}")
    with database.connection_context():
        for stream_id in env.stream_ids:
            last = (
                Snapshot.select()
                .where(Snapshot.stream == stream_id)
                .order_by(Snapshot.captured_at.desc())
                .first()
            )
            claim = env.r.get(scheduling.claim_key(stream_id))
            stream = Stream.get_by_id(stream_id)
            lines.append(
                f"stream {stream_id} {stream.kind}: last snapshot "
                f"{last.captured_at if last else None}, next due {stream.next_due_at}, "
                f"claim {claim!r}, last error {stream.last_error!r}"
            )
    lines.append(f"workers: {env.worker_hosts()}")
    waiting = {q: get_queue(q, env.r).count for q in ("schedule", "capture", "alerts", "analysis")}
    lines.append(f"queues waiting: {waiting}")
    return "\n".join(lines + _log_tails(env.cluster, 20))


def _wait_or_explain(env: Env, check: Callable[[], object], what: str) -> object:
    """wait_until(check, GUARD, what); on a timeout, the cluster's state with the failure."""
    try:
        return wait_until(check, GUARD, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_cluster_state(env)}") from None


def _captured_since(stream_ids: list[int], since) -> bool:  # noqa: ANN001
    """Every stream has a snapshot captured after `since`."""
    with database.connection_context():
        for stream_id in stream_ids:
            if (
                not Snapshot.select()
                .where((Snapshot.stream == stream_id) & (Snapshot.captured_at > since))
                .exists()
            ):
                return False
    return True


@pytest.fixture(scope="module")
def env(tmp_path_factory, postgres_dsn, moto_endpoint, media_root):  # noqa: F811
    base = tmp_path_factory.mktemp("cluster")
    # A Redis of the cluster's own: the session's is flushed by other tests (redis_client),
    # which would wipe the cluster's queues between two of these tests.
    redis_proc, redis_url = start_redis(base)
    bucket = "glimpser-cluster"
    creds = {"aws_access_key_id": "cluster-key-id", "aws_secret_access_key": "cluster-secret"}
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", **creds)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    database_url = _new_postgres_database(postgres_dsn)
    cluster = Cluster(
        base=base,
        shared=Shared(
            database_url=database_url,
            redis_url=redis_url,
            s3_endpoint=moto_endpoint,
            s3_bucket=bucket,
            aws_key_id=creds["aws_access_key_id"],
            aws_secret=creds["aws_secret_access_key"],
        ),
    )
    r = redis_lib.Redis.from_url(redis_url)
    rtsp = camera = receiver = None
    try:
        rtsp = RtspServer(media_root / "test.mp4")
        camera = SlowCamera(delay=1.0)
        receiver = Receiver()
        cluster.up()
        db.init_database(database_url)
        e = Env(cluster, r, s3, bucket)
        e.camera, e.receiver = camera, receiver
        # The first administrator, through the proxy (a browser's first visit).
        page = e.get("/setup")
        assert page.status_code == 200, page.text
        done = e.post(
            "/setup",
            {"username": "admin", "password": PASSWORD, "confirm": PASSWORD},
            "/setup",
        )
        assert done.status_code == 302, done.text
        with database.connection_context():
            rtsp_config = {"kind": "rtsp", "url": f"{rtsp.url}/test", "transport": "tcp"}
            rtsp_config |= {"timeout": 10, "username": "", "password": ""}
            e.rtsp_ids = [
                Stream.create(
                    name=f"Gate {n}",
                    kind="rtsp",
                    interval=2,
                    config=rtsp_config,
                    next_due_at=times.utcnow(),
                ).id
                for n in range(2)
            ]
            e.http_ids = [
                Stream.create(
                    name=f"Yard {n}",
                    kind="http_image",
                    interval=3,
                    config={"kind": "http_image", "url": camera.url, "timeout": 10},
                    next_due_at=times.utcnow(),
                ).id
                for n in range(3)
            ]
        try:
            wait_until(
                lambda: _captured_since(e.stream_ids, times.utcnow() - timedelta(days=1)),
                SETUP_GUARD,
                "a snapshot of every stream",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_why_not_captured(cluster, e.stream_ids)}") from None
        yield e
    finally:
        cluster.down()
        r.close()
        for server in (rtsp, camera, receiver):
            if server is not None:
                server.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def test_a_snapshot_captured_on_one_host_is_served_by_both_web_hosts(env: Env):
    """Captured by capture-b's worker, stored in S3, fetched through nginx from web-a and
    web-b (the X-Cluster-Upstream header names the web host that answered)."""

    def captured_on_b() -> tuple[int, int] | None:
        hosts = env.worker_hosts()
        for job in env.jobs("capture", "finished"):
            result = job.return_value() or {}
            if hosts.get(job.worker_name) == "capture-b" and result.get("stored"):
                return job.args[0], result["snapshot_id"]
        return None

    stream_id, snapshot_id = wait_until(captured_on_b, GUARD, "a snapshot stored by capture-b")
    with database.connection_context():
        row = Snapshot.get_by_id(snapshot_id)
        stream = Stream.get_by_id(stream_id)
    stored = env.s3.get_object(Bucket=env.bucket, Key=f"snapshots/{row.storage_key}")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == row.sha256

    # nginx takes turns between the web hosts: ask for each until both have answered it.
    pages: dict[str | None, str] = {}
    pictures: dict[str | None, bytes] = {}

    def answered_by_both(path: str, found: dict) -> bool:
        response = env.get(path)
        assert response.status_code == 200, response.text
        found[env.upstream(response)] = response.text if path == page else response.content
        return {"web-a", "web-b"} <= found.keys()

    page, picture = f"/streams/{stream_id}", f"/streams/{stream_id}/snapshots/{snapshot_id}.jpg"
    wait_until(lambda: answered_by_both(page, pages), GUARD, "the page from both web hosts")
    wait_until(lambda: answered_by_both(picture, pictures), GUARD, "the picture from both")
    for host in ("web-a", "web-b"):
        assert stream.name in pages[host]
        assert pictures[host] == stored
    # No shared disk: no host keeps a snapshot file; they live in the bucket only.
    assert list(env.cluster.base.glob("hosts/*/data/**/*.jpg")) == []
    # The capture host's own view of the deployment (database, schema, the same secret key,
    # Redis, a probe object in the bucket) is all ok.
    doctor = env.cluster.run_glimpser("capture-b", ["doctor"])
    assert doctor.returncode == 0 and "FAIL" not in doctor.stdout, doctor.stdout + doctor.stderr
    assert "the same as the deployment's" in doctor.stdout


def test_admin_system_shows_every_host_and_what_runs_there(env: Env):
    """Admin → System, through the proxy, shows each host by its GLIMPSER_NODE_NAME as up, with
    what runs there: web processes on the web hosts, readers holding streams on the capture
    hosts, workers on the others (from the heartbeats the processes keep in Redis)."""

    def sections() -> dict[str, str] | None:
        page = env.get("/admin/system")
        assert page.status_code == 200, page.status_code
        parts = page.text.split('<article class="host')[1:]
        found = {
            re.search(r'data-host="([^"]+)"', part).group(1): part.split("</article>")[0]
            for part in parts
        }
        return found if all(h.name in found for h in env.cluster.hosts) else None

    found = wait_until(sections, GUARD, "every host on Admin → System")
    for host in env.cluster.hosts:
        section = found[host.name]
        assert 'host-state">up<' in section, host.name
        if host.web:
            assert re.search(r"<strong>Web:</strong> \d+ process", section), host.name
        if host.name in CAPTURE_HOSTS:
            assert "Readers process PID" in section and "Workers on" in section, host.name
        if host.name in NOTIFY_HOSTS:
            assert "notify" in section, host.name


def test_a_timelapse_is_built_on_the_jobs_host_from_s3(env: Env):
    stream_id = env.http_ids[0]
    wait_until(lambda: len(_snapshots(stream_id)) >= 3, GUARD, "three snapshots")
    panel = f"/streams/{stream_id}/timelapses"
    answer = env.post(panel, {"preset": "hour", "fps": "5"}, panel)
    assert answer.status_code in (200, 302, 303), answer.text
    with database.connection_context():
        timelapse = Timelapse.select().where(Timelapse.stream == stream_id).get()

    def built() -> Timelapse | None:
        with database.connection_context():
            row = Timelapse.get_by_id(timelapse.id)
        assert row.status != "failed", row.error
        return row if row.status == "done" else None

    row = wait_until(built, GUARD, "the timelapse built")
    # Built by the maintenance worker of jobs-c (the only host that takes that queue).
    hosts = env.worker_hosts()
    builds = [
        j
        for j in env.jobs("maintenance", "finished")
        if j.func_name == "glimpser.jobs.build_timelapse" and j.args[0] == timelapse.id
    ]
    assert [hosts.get(j.worker_name) for j in builds] == ["jobs-c"]
    assert f"snapshots/{row.storage_key}" in env.s3_objects("snapshots/timelapses/")
    video = env.get(f"/streams/{stream_id}/timelapses/{timelapse.id}.mp4")
    assert video.status_code == 200 and video.content
    path = env.cluster.base / "timelapse.mp4"
    path.write_bytes(video.content)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"]
        + ["-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    info = json.loads(probe.stdout)["streams"][0]
    assert info["codec_name"] == "h264" and int(info["nb_read_frames"]) >= 3
    # The jobs host read the frames from S3: it holds no snapshot and no leftover video.
    data = env.cluster.data_dir("jobs-c")
    assert list(data.rglob("*.jpg")) == [] and list(data.rglob("*.mp4")) == []


def _rtsp_holders(env: Env) -> dict[int, str] | None:
    """RTSP stream → the capture host whose readers process holds its lease and reads it."""
    beats = _heartbeats(env.r)
    held = leases.holders(env.r, env.rtsp_ids)
    found = {}
    for stream_id, owner in held.items():
        if owner is None:
            return None
        pid = int(owner.split(":")[1])
        host = env.cluster.host_of_pid(pid)
        beat = beats.get(pid)
        if host not in CAPTURE_HOSTS or beat is None or stream_id not in beat["ids"]:
            return None
        if any(s["state"] != "reading" for s in beat["streams"] if int(s["id"]) == stream_id):
            return None
        found[stream_id] = host
    return found


def _frames_after(env: Env, mark: float) -> bool:
    return all(float(env.r.hget(readers.frame_key(i), "at") or 0) > mark for i in env.rtsp_ids)


def _restart(env: Env, host: str) -> None:
    env.cluster.start_host(host)
    if "readers" in env.cluster.procs[host]:
        pid = env.cluster.procs[host]["readers"]
        wait_until(lambda: pid in _heartbeats(env.r), GUARD, f"{host}'s readers heartbeat")


def test_the_other_readers_host_takes_over_an_rtsp_stream_after_kill_9(env: Env):
    holders = wait_until(lambda: _rtsp_holders(env), GUARD, "the RTSP streams read")
    victim = holders[env.rtsp_ids[0]]
    survivor = next(h for h in CAPTURE_HOSTS if h != victim)
    killed_at = times.utcnow()
    mark = time.time()
    env.cluster.kill_host(victim)
    try:
        _wait_or_explain(
            env,
            lambda: (h := _rtsp_holders(env)) and set(h.values()) == {survivor},
            f"{survivor} reading every RTSP stream",
        )
        print(f"\n{survivor} reads every RTSP stream {time.time() - mark:.1f} s after the kill")
        _wait_or_explain(env, lambda: _frames_after(env, mark), "frames after the kill")
        # And they are captured from those frames (by the survivor's capture worker).
        _wait_or_explain(env, lambda: _captured_since(env.rtsp_ids, killed_at), "RTSP snapshots")
    finally:
        _restart(env, victim)


def _stale_claims(env: Env) -> list[int]:
    """Streams whose capture claim belongs to a job that no live worker will finish."""
    from rq.job import Job, JobStatus

    live = set(env.worker_hosts())
    stale = []
    for stream_id in env.stream_ids:
        value = env.r.get(scheduling.claim_key(stream_id))
        if value is None:
            continue
        job = Job.fetch_many([value.decode()], connection=env.r)[0]
        status = job.get_status(refresh=False) if job is not None else None
        if status in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED):
            continue
        if status == JobStatus.STARTED and job.worker_name in live:
            continue
        stale.append(stream_id)
    return stale


def test_kill_9_of_a_capture_host_mid_capture_loses_nothing(env: Env):
    def capture_in_flight() -> tuple[str, str, int] | None:
        hosts = env.worker_hosts()
        for job in env.jobs("capture", "started"):
            host = hosts.get(job.worker_name)
            if host in CAPTURE_HOSTS and job.args and job.args[0] in env.http_ids:
                return host, job.id, job.args[0]
        return None

    # A capture of the slow camera running on a capture host (the camera holds it 1 s).
    env.camera.in_flight.clear()
    host, job_id, stream_id = wait_until(capture_in_flight, GUARD, "a capture in flight", 0.05)
    killed_at = times.utcnow()
    env.cluster.kill_host(host)
    try:
        # Every stream keeps capturing: a snapshot of each after the kill, from the other host.
        _wait_or_explain(env, lambda: _captured_since(env.stream_ids, killed_at), "every stream")
        print(f"\nevery stream captured again {times.utcnow() - killed_at} after the kill")
        # The dead job's claim lapsed; nothing holds a stream for a job nobody runs.
        wait_until(lambda: not _stale_claims(env), GUARD, "no stream left claimed")
        print(f"no stale claim {times.utcnow() - killed_at} after the kill")
        assert env.r.get(scheduling.claim_key(stream_id)) != job_id.encode()
        # Every snapshot row has its whole object in S3 (rows first: a capture puts the
        # object before it inserts the row, so a row read now has its object listed after).
        rows = _snapshots()
        objects = env.s3_objects("snapshots/")
        missing = [r.id for r in rows if objects.get(f"snapshots/{r.storage_key}") != r.bytes]
        assert rows and missing == []
    finally:
        _restart(env, host)


def test_kill_9_of_a_notify_host_mid_delivery_sends_each_notification_at_most_once(env: Env):
    """dispatch.deliver() claims a delivery (queued → sending) before sending: at most once.
    The delivery in flight on the killed host reached the receiver (it holds the request) and
    is never sent again; sweep_stuck_deliveries marks it failed, "outcome unknown", once it is
    older than dispatch.STUCK_AFTER. Every other delivery is sent by the other notify host,
    exactly once."""
    from glimpser import queues
    from glimpser.config import load_settings
    from glimpser.notify.dispatch import STUCK_AFTER

    receiver = env.receiver
    receiver.delay = 2.0  # slow: a delivery is in flight long enough to kill its host
    total = 6
    with database.connection_context():
        door, rule = webhook_rule(receiver.url)

    def notify(n: int) -> list[int]:
        with database.connection_context():
            events = [
                Event.create(stream=door, rule=rule, kind="motion", title=f"Motion {i}")
                for i in range(n)
            ]
            settings = load_settings(env.cluster.host_env("jobs-c"))
            return queues.enqueue_notifications(env.r, settings, [e.id for e in events])

    ids = notify(total)
    assert len(ids) == total

    def delivery_in_flight() -> tuple[str, int] | None:
        hosts = env.worker_hosts()
        with receiver.lock:
            holding = set(receiver.holding)
        for job in env.jobs("notify", "started"):
            host = hosts.get(job.worker_name)
            if host in NOTIFY_HOSTS and job.args and job.args[0] in holding:
                return host, job.args[0]
        return None

    host, in_flight = wait_until(delivery_in_flight, GUARD, "a delivery in flight", 0.05)
    env.cluster.kill_host(host)  # the receiver still holds its request: mid-delivery
    try:
        wait_until(lambda: set(receiver.counts()) >= set(ids), GUARD, "every notification")

        def settled() -> dict[int, str] | None:
            with database.connection_context():
                found = {d.id: d.status for d in Delivery.select().where(Delivery.id.in_(ids))}
            pending = ("queued", "retrying", "sending")
            return None if any(found[i] in pending for i in ids if i != in_flight) else found

        # The other host marks its last one sent after the receiver answered it.
        statuses = wait_until(settled, GUARD, "the other deliveries finished")
        assert statuses == {i: ("sending" if i == in_flight else "sent") for i in ids}

        # The sweep, once the stuck delivery is older than STUCK_AFTER (its age is set back
        # rather than waited for): the real job, on the jobs host's maintenance worker.
        with database.connection_context():
            Delivery.update(updated_at=times.utcnow() - STUCK_AFTER - timedelta(seconds=1)).where(
                Delivery.id == in_flight
            ).execute()
        sweep = queues.get_queue("maintenance", env.r).enqueue(
            "glimpser.jobs.sweep_stuck_deliveries"
        )

        def swept() -> Delivery | None:
            with database.connection_context():
                row = Delivery.get_by_id(in_flight)
            return row if row.status == "failed" else None

        row = wait_until(swept, GUARD, "the stuck delivery swept")
        assert row.error.startswith("outcome unknown")
        wait_until(lambda: sweep.get_status() == "finished", GUARD, "the sweep job")
        sweep.refresh()
        assert env.worker_hosts().get(sweep.worker_name) == "jobs-c"

        # Nothing is resent: a later notification arrives, and still each one came once.
        later = notify(1)
        wait_until(lambda: set(later) <= set(receiver.counts()), GUARD, "a later notification")
        counts = receiver.counts()
        assert {i: counts[i] for i in ids + later} == dict.fromkeys(ids + later, 1)
        assert sum(counts.values()) == total + 1
    finally:
        receiver.delay = 0.0
        _restart(env, host)
