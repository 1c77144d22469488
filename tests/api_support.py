"""Shared helpers of the JSON API tests: users, keys, and a client that sends the key."""

from __future__ import annotations

from typing import Any

from tests.helpers import PASSWORD


def make_user(username: str, role: str = "viewer", password: str | None = PASSWORD):
    from glimpser.auth.users import create_user
    from glimpser.db import database

    with database.connection_context():
        return create_user(username, password, role)


def make_key(user, *scopes: str, **options: Any) -> str:
    """A new key of `user` with `scopes` (default read); returns the token."""
    from glimpser.auth import api_keys
    from glimpser.db import database

    with database.connection_context():
        return api_keys.create_key(user, scopes or ("read",), **options).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class ApiClient:
    """The Flask test client with one key on every request: `api.get("/streams")`."""

    def __init__(self, app, token: str, prefix: str = "/api/v1") -> None:
        self.client = app.test_client()
        self.token = token
        self.prefix = prefix

    def open(self, method: str, path: str, **kwargs: Any):
        headers = {**bearer(self.token), **kwargs.pop("headers", {})}
        url = path if path.startswith("/api/") else self.prefix + path
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.open("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any):
        return self.open("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any):
        return self.open("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any):
        return self.open("DELETE", path, **kwargs)


def api_as(app, username: str, role: str = "admin", *scopes: str, **options: Any) -> ApiClient:
    """A new user (role) with a new key (scopes, default: admin → admin, viewer → read)."""
    user = make_user(username, role)
    scopes = scopes or (("admin",) if role == "admin" else ("read",))
    return ApiClient(app, make_key(user, *scopes, **options))
