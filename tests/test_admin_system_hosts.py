"""Admin → System as a cluster: real `glimpser worker`, `glimpser scheduler` and `glimpser web`
processes on two "hosts" (GLIMPSER_NODE_NAME differs, as on two machines sharing Redis and
the database), grouped by host with their queues, PIDs and counts; a host whose processes are
all killed (-9) is shown as gone, its dead worker as not heard from, instead of vanishing."""

from __future__ import annotations

import re

import pytest

from glimpser import heartbeats, node
from tests.conftest import make_env
from tests.faults_support import kill9, start_glimpser, stop, wait_until
from tests.helpers import PASSWORD, free_port, setup_admin

pytestmark = pytest.mark.slow

PAGE = "/admin/system/"
GUARD = 60.0  # seconds: a hang guard, not a performance threshold


def host_card(html: str, name: str) -> str | None:
    """The <article> of one host on the live fragment, or None."""
    found = re.search(rf'<article class="host[^"]*" data-host="{name}".*?</article>', html, re.S)
    return found.group(0) if found else None


def test_processes_on_two_hosts_are_grouped_and_a_lost_host_is_shown_gone(app, tmp_path):
    admin = app.test_client()
    setup_admin(admin, "alice", PASSWORD)
    settings = app.extensions["glimpser.settings"]
    base = make_env(settings.data_dir, settings.redis_url, PATH="/usr/bin:/bin")
    on_a = {**base, "GLIMPSER_NODE_NAME": "host-a"}
    on_b = {**base, "GLIMPSER_NODE_NAME": "host-b"}
    logs = tmp_path / "logs"
    worker_a = start_glimpser(["worker", "--queues", "capture,maintenance"], on_a, logs)
    web_a = start_glimpser(
        ["web"], {**on_a, "GLIMPSER_PORT": str(free_port()), "GLIMPSER_WEB_WORKERS": "2"}, logs
    )
    worker_b = start_glimpser(["worker", "--queues", "notify,browser"], on_b, logs)
    scheduler_b = start_glimpser(["scheduler"], on_b, logs)
    procs = [worker_a, web_a, worker_b, scheduler_b]

    def live() -> str:
        response = admin.get(PAGE + "live")
        assert response.status_code == 200
        return response.get_data(as_text=True)

    def both_up() -> tuple[str, str] | None:
        html = live()
        a, b = host_card(html, "host-a"), host_card(html, "host-b")
        if not (
            a and b and f'data-pid="{worker_a.pid}"' in a and f'data-pid="{worker_b.pid}"' in b
        ):
            return None
        web = re.search(r"<strong>Web:</strong> (\d+) process", a)
        if not web or int(web.group(1)) < 2 or "<strong>Scheduler:</strong> PID" not in b:
            return None
        return a, b

    try:
        a, b = wait_until(both_up, GUARD, "both hosts with their processes")
        assert 'class="good host-state">up' in a and 'class="good host-state">up' in b
        # host-a's worker: its main thread on maintenance (which host-b's scheduler fills),
        # and its capture threads (GLIMPSER_CAPTURE_THREADS), each an RQ worker: one row each.
        rows_a = re.findall(rf'<tr data-pid="{worker_a.pid}">(.*?)</tr>', a, re.S)
        row_a = next(r for r in rows_a if 'data-label="Queues">maintenance</td>' in r)
        assert re.search(r'"Done / failed">\d+ / 0</td>', row_a), row_a
        assert sum('data-label="Queues">capture</td>' in r for r in rows_a) == 8, rows_a
        row_b = re.search(rf'<tr data-pid="{worker_b.pid}">(.*?)</tr>', b, re.S).group(1)
        assert "notify, browser" in row_b
        assert f"PID {scheduler_b.pid}" in b and "alive" in b
        # Each process is listed on its own host only.
        assert str(worker_b.pid) not in a and str(scheduler_b.pid) not in a
        assert "<strong>Web:</strong> <span" in b  # "none" on host-b

        # host-b is lost: its processes die without a word.
        kill9(worker_b)
        kill9(scheduler_b)

        def b_gone() -> str | None:
            card = host_card(live(), "host-b")
            return card if card and 'class="bad host-state">gone' in card else None

        gone = wait_until(b_gone, GUARD, "host-b shown as gone")
        assert "no process heard from for" in gone
        # RQ still has the killed worker's entry (it expires in minutes): shown as silent.
        dead = re.search(rf'<tr data-pid="{worker_b.pid}">(.*?)</tr>', gone, re.S)
        assert dead and "not heard from" in dead.group(1)
        html = live()
        assert 'class="good host-state">up' in host_card(html, "host-a")
        home = admin.get("/admin/").get_data(as_text=True)
        assert "host-b" in home and "not heard from" in home
    finally:
        stop(procs)


def test_a_process_heartbeat_names_its_node_and_a_clean_stop_withdraws_it(redis_client):
    node.configure("node-x")
    try:
        beat = heartbeats.Heartbeat(redis_client, "worker", every=0.2).start()
        found = wait_until(
            lambda: [p for p in heartbeats.processes(redis_client) if p.node == "node-x"],
            GUARD,
            "the heartbeat",
        )
        assert found[0].kind == "worker"
        assert "node-x" in heartbeats.nodes(redis_client)
        beat.stop()
        assert not [p for p in heartbeats.processes(redis_client) if p.node == "node-x"]
        # The host's stamp stays: a host that stopped is shown gone, not forgotten.
        assert "node-x" in heartbeats.nodes(redis_client)
    finally:
        node.configure("")


def test_node_names_are_validated(tmp_path, redis_url):
    from glimpser.config import ConfigError, load_settings

    env = make_env(tmp_path, redis_url)
    assert load_settings({**env, "GLIMPSER_NODE_NAME": "cam-host.2"}).node_name == "cam-host.2"
    for bad in ("a:b", "two words", "-x", "x" * 64):
        with pytest.raises(ConfigError, match="GLIMPSER_NODE_NAME"):
            load_settings({**env, "GLIMPSER_NODE_NAME": bad})
