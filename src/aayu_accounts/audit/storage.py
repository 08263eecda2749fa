"""Where signed checkpoints are kept outside the database: a directory, an S3-compatible store.

``AAYU_AUDIT_CHECKPOINT_URL`` chooses: ``file:///path`` puts the directory there (instead of
``AAYU_AUDIT_CHECKPOINT_DIR``); ``s3://bucket/prefix`` keeps the directory *and* copies every
checkpoint to the bucket. The directory is written first, under the chain lock, because it
cannot be slow or down; the object store is written after the transaction committed, through
the ``object_store`` dependency of ``kit.resilience`` (timeout per attempt, retries with
backoff, circuit breaker), so an outage of the store never holds up the audit chain. Whatever
the store misses (it was down, the breaker was open) is uploaded on the next run: each run
copies every local checkpoint the store does not have yet.

Point the store at a bucket with S3 Object Lock (compliance mode) or at least a policy that
denies ``s3:DeleteObject`` and overwrites to the application's credentials: the copy that
matters is the one the database host cannot alter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from aayu_accounts.audit.checkpoint import (
    CheckpointVerifier,
    LoadedCheckpoint,
    is_checkpoint_name,
    iter_checkpoint_files,
    load_checkpoint,
)
from aayu_accounts.config import Settings
from aayu_accounts.kit.resilience import OBJECT_STORE, dependency

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class CheckpointStore(Protocol):
    """A place checkpoints are copied to and read back from."""

    @property
    def location(self) -> str: ...

    async def names(self) -> list[str]: ...

    async def get(self, name: str) -> bytes: ...

    async def put(self, name: str, data: bytes) -> None: ...


class DirectoryStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def location(self) -> str:
        return str(self.directory)

    async def names(self) -> list[str]:
        return [path.name for path in iter_checkpoint_files(self.directory)]

    async def get(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    async def put(self, name: str, data: bytes) -> None:
        from aayu_accounts.audit.checkpoint import write_file_atomically  # noqa: PLC0415

        write_file_atomically(self.directory, name, data)


class ObjectStoreError(Exception):
    """An S3 call failed. ``status_code`` (the HTTP status, when there was an answer) tells the
    resilience policy whether to retry: a 4xx is an answer (refused, no such bucket), not an
    outage, and is neither retried nor counted against the breaker."""

    def __init__(self, message: str, status_code: int | None) -> None:
        super().__init__(message)
        self.status_code = status_code


def _translate(exc: Exception) -> ObjectStoreError:
    from botocore.exceptions import ClientError  # noqa: PLC0415 - boto3 loads only for S3

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code", "error")
        return ObjectStoreError(f"object store refused: {code}", status)
    return ObjectStoreError(f"object store unreachable: {type(exc).__name__}", None)


class S3Store:
    """Checkpoints as objects ``<prefix>/<file name>`` in an S3-compatible bucket.

    boto3 is synchronous: each call runs in a worker thread, bounded by the dependency's
    timeout (botocore's own connect/read timeouts are set to the same value, so an abandoned
    thread does not linger either).
    """

    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    async def _call(self, operation: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        async def attempt() -> Any:
            try:
                return await asyncio.to_thread(operation)
            except (ClientError, BotoCoreError) as exc:
                raise _translate(exc) from exc

        return await dependency(OBJECT_STORE).call(attempt)

    async def names(self) -> list[str]:
        def list_all() -> list[str]:
            found: list[str] = []
            start = f"{self.prefix}/" if self.prefix else ""
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    name = item["Key"][len(start) :]
                    if "/" not in name and is_checkpoint_name(name):
                        found.append(name)
            return sorted(found)

        names: list[str] = await self._call(list_all)
        return names

    async def get(self, name: str) -> bytes:
        def read() -> bytes:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
            return response["Body"].read()

        data: bytes = await self._call(read)
        return data

    async def put(self, name: str, data: bytes) -> None:
        def write() -> None:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(name),
                Body=data,
                ContentType="application/json",
            )

        await self._call(write)


@dataclass(frozen=True)
class CheckpointTargets:
    """The directory (always) and the object stores checkpoints are copied to."""

    directory: Path
    remote: tuple[CheckpointStore, ...] = ()

    def all(self) -> list[CheckpointStore]:
        return [DirectoryStore(self.directory), *self.remote]


class BadCheckpointUrl(ValueError):
    pass


def s3_client(settings: Settings) -> S3Client:
    # Imported here: boto3 takes a while to import, and only an s3:// URL needs it.
    import boto3  # noqa: PLC0415
    from botocore.config import Config as BotoConfig  # noqa: PLC0415

    timeout = settings.audit_s3_timeout_seconds
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=settings.audit_s3_endpoint_url,
        region_name=settings.audit_s3_region,
        aws_access_key_id=settings.audit_s3_access_key_id,
        aws_secret_access_key=settings.audit_s3_secret_access_key,
        # Retries belong to the resilience policy, not to botocore as well.
        config=BotoConfig(
            connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}
        ),
    )
    return client


def checkpoint_targets(settings: Settings) -> CheckpointTargets:
    """Raises :class:`BadCheckpointUrl` for a URL that is neither ``file://`` nor ``s3://``."""
    url = settings.audit_checkpoint_url
    if not url:
        return CheckpointTargets(settings.audit_checkpoint_path)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise BadCheckpointUrl("a file:// checkpoint URL needs an absolute path")
        return CheckpointTargets(Path(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        store = S3Store(parts.netloc, parts.path, s3_client(settings))
        return CheckpointTargets(settings.audit_checkpoint_path, (store,))
    raise BadCheckpointUrl("audit_checkpoint_url must be file:///path or s3://bucket/prefix")


async def load_all(
    stores: list[CheckpointStore], verifier: CheckpointVerifier
) -> list[LoadedCheckpoint]:
    """Every checkpoint in every store (each store's copy checked on its own). A store that
    cannot be read raises: a verification that silently skipped it would prove less than it
    says."""
    loaded: list[LoadedCheckpoint] = []
    for store in stores:
        for name in await store.names():
            data = await store.get(name)
            loaded.append(load_checkpoint(name, data, verifier, store.location))
    return loaded


async def copy_missing(directory: Path, store: CheckpointStore) -> list[str]:
    """Upload every checkpoint of ``directory`` that ``store`` lacks; returns their names.

    Raises the store's error (after the policy's retries) at the first failure; what was
    copied before it stays copied, the rest goes next time.
    """
    present = set(await store.names())
    copied: list[str] = []
    for path in iter_checkpoint_files(directory):
        if path.name not in present:
            await store.put(path.name, path.read_bytes())
            copied.append(path.name)
    return copied
