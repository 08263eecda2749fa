"""Shapes of ``/api/v1/me/data``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints

KEY_REGEX = r"^[A-Za-z0-9._-]{1,128}$"
DocumentKey = Annotated[str, StringConstraints(pattern=KEY_REGEX)]
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_IMPORT_DOCUMENTS = 500


class DocumentKeys(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[str]


class ImportResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    imported: int


class LocalStorageSnapshot(RootModel[dict[DocumentKey, dict[str, Any]]]):
    """A whole LocalStorage snapshot: ``{key: document}``."""

    root: dict[DocumentKey, dict[str, Any]] = Field(max_length=MAX_IMPORT_DOCUMENTS)
