"""Small helpers the tests share: ports, waiting, CSRF-aware form posts."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import requests

_CSRF_FIELD = re.compile(
    r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"'
)
_CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 20, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s: {last}")


def csrf_from(html: str) -> str:
    """The CSRF token from a rendered form (or the page's htmx header)."""
    match = _CSRF_FIELD.search(html)
    if match:
        return match.group(1) or match.group(2)
    match = _CSRF_HEADER.search(html)
    assert match, "page carries no CSRF token"
    return match.group(1)


def form_post(
    client, page_url: str, post_url: str | None = None, data: dict | None = None, **kwargs
):
    """GET a page for its CSRF token, then POST the form as a browser would (test client)."""
    page = client.get(page_url)
    token = csrf_from(page.get_data(as_text=True))
    return client.post(post_url or page_url, data={"csrf_token": token, **(data or {})}, **kwargs)


def setup_admin(client, username: str = "admin", password: str = "correct horse battery"):
    """Complete first-run setup; the client is signed in as that admin afterwards."""
    response = form_post(
        client, "/setup", data={"username": username, "password": password, "confirm": password}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def login(client, username: str, password: str):
    return form_post(client, "/login", data={"username": username, "password": password})


def logout(client):
    return form_post(client, "/", "/logout")


def first_run_in_browser(
    page,
    url: str,
    username: str = "alice",  # noqa: ANN001
    password: str = "correct horse battery",
) -> None:
    """Create the first admin through /setup in a real browser; it is signed in afterwards."""
    from playwright.sync_api import expect

    page.goto(url + "/setup")
    page.get_by_label("Admin username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat password").fill(password)
    page.get_by_role("button", name="Create administrator").click()
    expect(page).to_have_url(url + "/")
