"""argon2id password hashing, and the password policy every new password must meet.

The policy (`password_problem`) is applied wherever a password is set: first-run setup,
`glimpser create-user`, Admin → Users (create, reset), the one-time set-password link and the
profile's change-password form. One clear message per rule:

- at least MIN_PASSWORD_LENGTH characters (and at most MAX_PASSWORD_LENGTH);
- not the username, and not containing it (case-insensitive);
- not one of the very common passwords shipped in common_passwords.txt (case-insensitive).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

# Verified against when the username does not exist, so that the answer takes as long.
_DUMMY_HASH = _hasher.hash("glimpser-no-such-user")

# Stored for a user who has no password yet (made with a one-time set-password link): it is
# not an argon2 hash, so no password ever verifies against it.
NO_PASSWORD = "!"  # noqa: S105 - a marker, not a password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; always spends the cost of one verification (also for
    an unknown user and for a user who has no password yet)."""
    usable = bool(password_hash) and password_hash != NO_PASSWORD
    try:
        return _hasher.verify(password_hash if usable else _DUMMY_HASH, password) and usable
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of very common passwords, lower case."""
    text = resources.files("glimpser.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def password_problem(password: str, username: str = "") -> str | None:
    """Why a new password (of the user `username`) is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Password must be at most {MAX_PASSWORD_LENGTH} characters."
    name = username.strip().casefold()
    if name and name in password.casefold():
        return "Password must not be or contain the username."
    if password.strip().lower() in common_passwords():
        return "That password is one of the most common ones; choose another."
    return None
