"""Personal fields encrypted at rest (AES-256-GCM) and blind indexes for lookups.

How a model keeps a field encrypted (the identity models follow this)::

    from aayu_accounts.crypto.field_encryption import (
        BlindIndexColumn, EncryptedColumn, EncryptedField, normalize_email,
    )

    class User(IdMixin, Base):
        __tablename__ = "users"

        # What the database holds: ciphertext and an HMAC index, never the address.
        email_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
        email_index: Mapped[bytes] = mapped_column(BlindIndexColumn(), unique=True)
        full_name_ciphertext: Mapped[bytes] = mapped_column(EncryptedColumn())
        phone_ciphertext: Mapped[bytes | None] = mapped_column(EncryptedColumn())

        # What code uses: plaintext in, plaintext out (no annotation: not a column).
        email = EncryptedField("email_ciphertext", index="email_index",
                               index_kind="email", normalize=normalize_email)
        full_name = EncryptedField("full_name_ciphertext")
        phone = EncryptedField("phone_ciphertext")

    user = User(email="Ada@Example.org", full_name="Ada Lovelace")   # encrypted on assignment
    user.email                                                        # "Ada@Example.org"
    await session.scalar(select(User).where(User.email.matches("ada@example.ORG")))

In the migration the columns are ``sa.LargeBinary()`` (``EncryptedColumn``/``BlindIndexColumn``
store plain ``BYTEA``/``BLOB``), the index column with its unique constraint.

Why it cannot store plaintext by accident:

* The columns accept only :class:`Sealed` / :class:`BlindIndexValue` objects, which only this
  module creates. A ``str`` or plain ``bytes`` written to them (by the ORM or a Core statement)
  raises :class:`PlaintextRefused` before any SQL is sent.
* Assignment to the :class:`EncryptedField` encrypts at once; the plaintext exists only in
  memory (a per-object cache, so reads do not decrypt twice).

The associated data of every ciphertext is ``table, column, row id``: a ciphertext copied to
another row or column fails to decrypt (:class:`~.primitives.DecryptionFailed`). Assigning the
field gives the row its id first (from the id column's default) if it has none; should the id
change before the flush, the value is re-encrypted for the new id at flush time.

Every field registers itself (:func:`encrypted_fields`), so re-encryption after a key rotation
and the "is this key version still used" check find every encrypted column, including tables
added later, without a list to maintain.

Lookups and uniqueness: ``User.email.matches(address)`` matches the index under every loaded
blind-index version. While a blind-index rotation is being re-indexed the same address can
have two index values, so a unique constraint on the index column alone does not catch a
duplicate across versions: check with ``matches()`` before inserting (the constraint still
catches races within one version). ``User.email.index_for(address)`` gives the current index.

Other keys: service-client secrets use ``EncryptedField(..., purpose=KeyPurpose.CLIENT_SECRET)``;
``normalize_phone`` is the normalizer for phone-number indexes (``index_kind="phone"``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, overload

from sqlalchemy import LargeBinary, MetaData, Table, event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import InstrumentedAttribute, Mapper, Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from aayu_accounts.crypto.keyring.core import (
    BLIND_INDEX_BYTES,
    MIN_CIPHERTEXT_BYTES,
    Keyring,
    ciphertext_version,
)
from aayu_accounts.crypto.keyring.process import get_keyring
from aayu_accounts.crypto.keyring.purposes import KeyPurpose, KeyUse

Normalizer = Callable[[str], str]


class PlaintextRefused(TypeError):
    """Something other than a ciphertext (or blind index) was about to be stored."""


class MissingRowIdentity(ValueError):
    """An encrypted field was set on a row that has no id and no id default."""


class Sealed(bytes):
    """A ciphertext made by this module. Encrypted columns store nothing else."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Sealed(<{len(self)} bytes>)"


class BlindIndexValue(bytes):
    """A blind index made by this module. Blind-index columns store nothing else."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"BlindIndexValue(<{len(self)} bytes>)"


class EncryptedColumn(TypeDecorator[bytes]):
    """Column type for ciphertexts: refuses anything but :class:`Sealed` values."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, Sealed) or len(value) < MIN_CIPHERTEXT_BYTES:
            raise PlaintextRefused("an encrypted column takes only values from EncryptedField")
        return bytes(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else Sealed(value)


class BlindIndexColumn(TypeDecorator[bytes]):
    """Column type for blind indexes: refuses anything but :class:`BlindIndexValue` values."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, BlindIndexValue) or len(value) != BLIND_INDEX_BYTES:
            raise PlaintextRefused("a blind-index column takes only values from EncryptedField")
        return bytes(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        return None if value is None else BlindIndexValue(value)


def normalize_email(value: str) -> str:
    """The form an address is indexed under: NFC, trimmed, lower-case.

    Lower-casing the local part is technically lossy (RFC 5321 lets it be case-sensitive),
    but no mail system in use by clinics distinguishes case, and users type it both ways.
    """
    return unicodedata.normalize("NFC", value).strip().lower()


def normalize_phone(value: str) -> str:
    """Digits and a leading ``+`` only, so "+1 (555) 010-0000" and "+15550100000" match."""
    stripped = value.strip()
    digits = "".join(ch for ch in stripped if ch.isdigit())
    return ("+" if stripped.startswith("+") else "") + digits


def associated_data(table: str, column: str, row_id: str) -> bytes:
    """What binds a ciphertext to its place: table, column and row id (unit separators)."""
    return f"{table}\x1f{column}\x1f{row_id}".encode()


def seal(
    keyring: Keyring, purpose: KeyPurpose, plaintext: str, *, table: str, column: str, row_id: str
) -> Sealed:
    return Sealed(
        keyring.encrypt(purpose, plaintext.encode(), associated_data(table, column, row_id))
    )


def unseal(
    keyring: Keyring,
    purpose: KeyPurpose,
    ciphertext: bytes,
    *,
    table: str,
    column: str,
    row_id: str,
) -> str:
    plain = keyring.decrypt(purpose, bytes(ciphertext), associated_data(table, column, row_id))
    return plain.decode()


@dataclass(frozen=True)
class FieldSpec:
    """One encrypted field of one model, as the re-encryption job and key retirement see it."""

    model: type[Any]
    attribute: str
    column_key: str
    index_key: str | None
    index_kind: str | None
    normalize: Normalizer | None
    purpose: KeyPurpose

    @property
    def mapper(self) -> Mapper[Any]:
        mapper: Mapper[Any] = sa_inspect(self.model)
        return mapper

    @property
    def table(self) -> Table:
        table = self.mapper.local_table
        assert isinstance(table, Table)
        return table

    @property
    def column_name(self) -> str:
        return str(self.mapper.columns[self.column_key].name)

    @property
    def index_name(self) -> str | None:
        if self.index_key is None:
            return None
        return str(self.mapper.columns[self.index_key].name)

    @property
    def primary_key_names(self) -> list[str]:
        return [str(column.name) for column in self.mapper.primary_key]

    def aad_for(self, row_id: str) -> bytes:
        return associated_data(self.table.name, self.column_name, row_id)

    def index_of(self, keyring: Keyring, plaintext: str) -> BlindIndexValue:
        assert self.index_kind is not None
        normalized = self.normalize(plaintext) if self.normalize else plaintext
        return BlindIndexValue(keyring.blind_index(normalized, self.index_kind))


_registry: list[FieldSpec] = []


def encrypted_fields(metadata: MetaData | None = None) -> list[FieldSpec]:
    """Every registered encrypted field, optionally only those whose table is in ``metadata``."""
    specs = list(_registry)
    if metadata is not None:
        specs = [s for s in specs if s.table.metadata is metadata]
    return specs


_CACHE_ATTR = "_aayu_plaintext_cache"


@dataclass(frozen=True)
class _Cached:
    ciphertext: bytes
    plaintext: str
    row_id: str


class EncryptedField:
    """Plaintext access to an encrypted column (see the module docstring for an example).

    ``index`` names a :class:`BlindIndexColumn` kept in step with the value; ``index_kind``
    separates index domains (default: the attribute name) and ``normalize`` is applied before
    indexing only (the stored value is what was assigned).
    """

    def __init__(
        self,
        column: str,
        *,
        index: str | None = None,
        index_kind: str | None = None,
        normalize: Normalizer | None = None,
        purpose: KeyPurpose = KeyPurpose.DATA,
    ) -> None:
        if purpose.use is not KeyUse.ENCRYPT:
            raise ValueError(f"{purpose.value} keys do not encrypt")
        self.column = column
        self.index = index
        self.index_kind = index_kind
        self.normalize = normalize
        self.purpose = purpose
        self.name = ""
        self._spec: FieldSpec | None = None

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name
        self._spec = FieldSpec(
            model=owner,
            attribute=name,
            column_key=self.column,
            index_key=self.index,
            index_kind=(self.index_kind or name) if self.index else None,
            normalize=self.normalize,
            purpose=self.purpose,
        )
        _registry.append(self._spec)

    @property
    def spec(self) -> FieldSpec:
        if self._spec is None:
            raise RuntimeError("EncryptedField used outside a class body")
        return self._spec

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type[Any]) -> str | None: ...
    def __get__(self, instance: object | None, owner: type[Any]) -> Self | str | None:
        if instance is None:
            return self
        ciphertext: bytes | None = getattr(instance, self.column)
        if ciphertext is None:
            return None
        cache = _cache(instance)
        cached = cache.get(self.name)
        row_id = _row_id(instance, assign=False)
        if cached is not None and cached.ciphertext == ciphertext and cached.row_id == row_id:
            return cached.plaintext
        spec = self.spec
        plaintext = unseal(
            get_keyring(),
            self.purpose,
            ciphertext,
            table=spec.table.name,
            column=spec.column_name,
            row_id=row_id,
        )
        cache[self.name] = _Cached(bytes(ciphertext), plaintext, row_id)
        return plaintext

    def __set__(self, instance: object, value: str | None) -> None:
        if value is None:
            setattr(instance, self.column, None)
            if self.index:
                setattr(instance, self.index, None)
            _cache(instance).pop(self.name, None)
            return
        if not isinstance(value, str):
            raise TypeError(f"{self.name} takes a str")
        _seal_into(instance, self.spec, value, _row_id(instance, assign=True))

    # -- lookups ---------------------------------------------------------------------------

    def index_for(self, value: str) -> BlindIndexValue:
        """The blind index ``value`` is stored under now (current key version)."""
        return self.spec.index_of(get_keyring(), value)

    def matches(self, value: str) -> ColumnElement[bool]:
        """A WHERE clause finding rows whose field equals ``value`` (after normalization),
        under any loaded blind-index version (so lookups work while re-indexing runs)."""
        spec = self.spec
        if spec.index_key is None or spec.index_kind is None:
            raise TypeError(f"{self.name} has no blind index")
        normalized = spec.normalize(value) if spec.normalize else value
        candidates = [
            BlindIndexValue(i)
            for i in get_keyring().blind_index_candidates(normalized, spec.index_kind)
        ]
        column: InstrumentedAttribute[bytes] = getattr(spec.model, spec.index_key)
        return column.in_(candidates)


def _cache(instance: object) -> dict[str, _Cached]:
    store: dict[str, _Cached] = instance.__dict__.setdefault(_CACHE_ATTR, {})
    return store


def _seal_into(instance: object, spec: FieldSpec, value: str, row_id: str) -> None:
    keyring = get_keyring()
    ciphertext = seal(
        keyring, spec.purpose, value, table=spec.table.name, column=spec.column_name, row_id=row_id
    )
    setattr(instance, spec.column_key, ciphertext)
    if spec.index_key:
        setattr(instance, spec.index_key, spec.index_of(keyring, value))
    _cache(instance)[spec.attribute] = _Cached(bytes(ciphertext), value, row_id)


def _row_id(instance: object, *, assign: bool) -> str:
    """The row's primary key as text; with ``assign``, give it one from the id default."""
    mapper: Mapper[Any] = sa_inspect(type(instance))
    parts: list[str] = []
    for column in mapper.primary_key:
        key = mapper.get_property_by_column(column).key
        value = getattr(instance, key)
        if value is None:
            default: Any = column.default
            if not assign or default is None or not getattr(default, "is_callable", False):
                raise MissingRowIdentity(
                    f"{mapper.class_.__name__}.{key} must be set before encrypted fields"
                )
            # SQLAlchemy wraps a zero-argument default to take an execution context.
            value = default.arg(None)
            setattr(instance, key, value)
        parts.append(str(value))
    return "\x1f".join(parts)


def _specs_of(instance: object) -> list[FieldSpec]:
    found: list[FieldSpec] = []
    for klass in type(instance).__mro__:
        for value in vars(klass).values():
            if isinstance(value, EncryptedField) and value.spec not in found:
                found.append(value.spec)
    return found


@event.listens_for(Session, "before_flush")
def _reseal_if_row_id_changed(session: Session, _context: Any, _instances: Any) -> None:
    """An id assigned after the field (e.g. ``User(email=..., id=...)``) re-encrypts it, so
    the associated data always names the row the ciphertext is stored in."""
    for instance in (*session.new, *session.dirty):
        cache = instance.__dict__.get(_CACHE_ATTR)
        if not cache:
            continue
        for spec in _specs_of(instance):
            cached = cache.get(spec.attribute)
            if cached is None:
                continue
            row_id = _row_id(instance, assign=False)
            if row_id != cached.row_id and getattr(instance, spec.column_key) == cached.ciphertext:
                _seal_into(instance, spec, cached.plaintext, row_id)


def ciphertext_key_version(ciphertext: bytes) -> int:
    """The data-key version of a stored ciphertext (for tools and checks)."""
    return ciphertext_version(bytes(ciphertext))
