"""Where snapshot files live: a local directory or S3-compatible object storage, one interface.

Keys are relative, "/"-separated names such as ``12/2026/11/24/101500.123456-0a1b2c3d4e5f.jpg``
(see `snapshot_key`). Only glimpser.media.snapshots writes and deletes snapshot files, always
together with their database rows.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from glimpser import times
from glimpser.config import Settings

log = logging.getLogger(__name__)

# Each segment starts with a letter or digit (so never "", "." or ".." and never a hidden
# name: temporary files start with "." and cannot collide with a key); "/" separates segments.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
MAX_KEY_LENGTH = 500  # Snapshot.storage_key is a VARCHAR(500)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class StorageError(Exception):
    """A storage operation failed; the message is one line for the operator (no secrets)."""


class ObjectNotFound(StorageError):
    """The key names no stored object."""


def validate_key(key: str) -> str:
    """Return the key if it is a safe relative name; raise StorageError otherwise.

    Refused: empty, absolute ("/..."), backslashes, "." / ".." or empty segments, hidden
    segments, characters outside [A-Za-z0-9._-/], longer than 500 characters.
    """
    if not isinstance(key, str) or not key:
        raise StorageError("storage key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise StorageError(f"storage key is longer than {MAX_KEY_LENGTH} characters")
    if not _KEY.fullmatch(key):
        raise StorageError(f"storage key {key[:80]!r} is not a safe relative name")
    return key


def snapshot_key(stream_id: int, captured_at: datetime, sha256: str) -> str:
    """The key of a snapshot: ``<stream>/<yyyy>/<mm>/<dd>/<hhmmss.ffffff>-<sha[:12]>.jpg`` (UTC)."""
    if isinstance(stream_id, bool) or not isinstance(stream_id, int) or stream_id <= 0:
        raise ValueError(f"invalid stream id {stream_id!r}")
    if not _SHA256.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    at = times.to_utc(captured_at)
    return f"{stream_id}/{at:%Y/%m/%d/%H%M%S.%f}-{sha256[:12]}.jpg"


@dataclass(frozen=True)
class StoredObject:
    """One stored file, as listed by `Storage.list_objects`."""

    key: str
    modified_at: datetime  # UTC
    size: int


@runtime_checkable
class Storage(Protocol):
    """What every backend offers. All methods raise StorageError (one-line message) on failure."""

    name: str

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        """Store data under key, replacing any object with that key, atomically."""

    def get(self, key: str) -> bytes:
        """The stored bytes; ObjectNotFound when there are none."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        """Remove many objects; returns the keys that could not be removed (errors are logged)."""

    def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for sendfile / X-Accel-Redirect, or None (object storage)."""

    def check(self) -> None:
        """Raise StorageError when the backend is not usable (for health/status pages)."""

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every stored file whose key starts with prefix, in key order (for the orphan sweep).
        Files being written (hidden temporary names) are not listed."""


# --- local directory --------------------------------------------------------------------------


def _one_line(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # said plainly: it is what the admin must fix
        return f"the disk is full ({exc.strerror})"
    return exc.strerror or type(exc).__name__


class LocalStorage:
    """Files under one root directory; writes are atomic (temp file + os.replace)."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        # resolve() follows symlinks: a link inside the root cannot lead outside it.
        if path == self.root or not path.is_relative_to(self.root):
            raise StorageError(f"storage key {key[:80]!r} leads outside the snapshot directory")
        return path

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        path = self._path(key)
        tmp: str | None = None
        try:
            # A concurrent delete() may prune the empty directory between mkdir and mkstemp.
            for attempt in range(3):
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o644)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            tmp = None
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {key} under {self.root}: {_one_line(exc)}") from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} is not in {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key} under {self.root}: {_one_line(exc)}") from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key} under {self.root}: {_one_line(exc)}") from None
        self._prune(path.parent)

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        failed = []
        for key in keys:
            try:
                self.delete(key)
            except StorageError as exc:
                log.warning("snapshot file not deleted", extra={"key": key, "error": str(exc)})
                failed.append(key)
        return failed

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.root}: {_one_line(exc)}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"snapshot directory {self.root} is not writable")

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        # Walk only the directory the prefix names (its part up to the last "/").
        start = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not start.resolve().is_relative_to(self.root) or not start.is_dir():
            return
        try:
            for directory, subdirs, files in os.walk(start):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                base = Path(directory)
                for name in sorted(files):
                    if name.startswith("."):
                        continue  # a temporary file of a write in progress (see put)
                    key = (base / name).relative_to(self.root).as_posix()
                    if not key.startswith(prefix):
                        continue
                    try:
                        info = (base / name).stat()
                    except FileNotFoundError:
                        continue  # deleted meanwhile
                    modified = datetime.fromtimestamp(info.st_mtime, UTC)
                    yield StoredObject(key, modified, info.st_size)
        except OSError as exc:
            raise StorageError(f"cannot list {self.root}: {_one_line(exc)}") from None

    def _prune(self, directory: Path) -> None:
        """Remove empty directories left behind (e.g. old days), up to but not the root."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or already gone, or not ours): stop here
            directory = directory.parent


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable, so a committed row never points at a file lost in a crash."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- S3-compatible object storage -------------------------------------------------------------


class S3Storage:
    """Objects in an S3 bucket (AWS, MinIO, Garage, Ceph...); credentials come from the standard
    AWS environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles)."""

    name = "s3"
    _DELETE_BATCH = 1000  # DeleteObjects accepts at most 1000 keys

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str = "",
        region: str = "",
    ) -> None:
        import boto3
        from botocore.config import Config

        if not bucket:
            raise StorageError("S3 storage needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        config = Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
            # S3-compatible servers usually want path-style URLs and no default CRC checksums.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # SigV4 everywhere, presigned URLs included (botocore may presign with SigV2).
            signature_version="s3v4",
        )
        # boto3's default session is not thread-safe; a client of our own session is.
        session = boto3.session.Session()
        self._client = session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=region or None, config=config
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, action: str, key: str | None, exc: Exception) -> StorageError:
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{self._object_key(key)}" if key else f"s3://{self.bucket}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", "error"
            )
            detail = f"{code}: {error.get('Message') or 'no message'}"
        else:
            detail = str(exc) or type(exc).__name__
        detail = " ".join(detail.split())
        return StorageError(f"S3 {action} {where} failed: {detail}")

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        object_key = self._object_key(key)
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("put", key, exc) from None

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        object_key = self._object_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=object_key)
            with contextlib.closing(response["Body"]) as body:
                return body.read()
        except ClientError as exc:
            if _is_not_found(exc):
                raise ObjectNotFound(f"{key} is not in s3://{self.bucket}") from None
            raise self._error("get", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("get", key, exc) from None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        object_key = self._object_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if not _is_not_found(exc):
                raise self._error("delete", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("delete", key, exc) from None

    def delete_many(self, keys: Iterable[str]) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        failed: list[str] = []
        by_object: dict[str, str] = {}
        for key in keys:
            try:
                by_object[self._object_key(key)] = key
            except StorageError:
                failed.append(key)
        objects = list(by_object)
        for start in range(0, len(objects), self._DELETE_BATCH):
            chunk = objects[start : start + self._DELETE_BATCH]
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                log.warning(
                    "snapshot files not deleted",
                    extra={"count": len(chunk), "error": str(self._error("delete", None, exc))},
                )
                failed.extend(by_object[k] for k in chunk)
                continue
            for error in response.get("Errors", []):
                if error.get("Code") in ("NoSuchKey", "NotFound"):
                    continue
                key = by_object.get(error.get("Key", ""), error.get("Key", ""))
                log.warning(
                    "snapshot file not deleted",
                    extra={"key": key, "error": f"{error.get('Code')}: {error.get('Message')}"},
                )
                failed.append(key)
        return failed

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        object_key = self._object_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _is_not_found(exc):
                return False
            raise self._error("head", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("head", key, exc) from None
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_get(self, key: str, seconds: int) -> str:
        """A URL anyone may GET the object by for `seconds` (S3 SigV4 query signing, computed
        here without a request). Browsers must reach the endpoint it names."""
        from botocore.exceptions import BotoCoreError

        try:
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object_key(key)},
                ExpiresIn=max(1, min(int(seconds), 7 * 24 * 3600)),  # SigV4's limit: a week
            )
        except BotoCoreError as exc:  # e.g. no credentials
            raise self._error("presign", key, exc) from None

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("head bucket", None, exc) from None

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        base = f"{self.prefix}/" if self.prefix else ""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(
                        item["Key"][len(base) :],
                        times.to_utc(item["LastModified"]),
                        int(item.get("Size", 0)),
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", None, exc) from None


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("NoSuchKey", "NotFound", "404") or status == 404


# --- one backend per process ------------------------------------------------------------------

_cache: dict[tuple, Storage] = {}
_cache_lock = threading.Lock()


def get_storage(settings: Settings) -> Storage:
    """The backend the settings name, created once per process (and again after a fork)."""
    if settings.storage == "s3":
        config: tuple = (
            "s3",
            settings.s3_bucket,
            settings.s3_prefix,
            settings.s3_endpoint_url,
            settings.s3_region,
        )
    elif settings.storage == "local":
        config = ("local", str(settings.snapshot_dir))
    else:
        raise StorageError(f"unknown storage backend {settings.storage!r}")
    # RQ forks a work horse per job: a client (and its sockets) must not cross a fork.
    cache_key = (os.getpid(), *config)
    with _cache_lock:
        storage = _cache.get(cache_key)
        if storage is None:
            if config[0] == "s3":
                storage = S3Storage(
                    settings.s3_bucket,
                    prefix=settings.s3_prefix,
                    endpoint_url=settings.s3_endpoint_url,
                    region=settings.s3_region,
                )
            else:
                storage = LocalStorage(settings.snapshot_dir)
            _cache[cache_key] = storage
        return storage
