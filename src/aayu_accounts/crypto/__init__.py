"""Secrets, keys and encryption at rest.

* :mod:`.primitives`: AES-256-GCM, HMAC-SHA256, random keys (the only place that touches
  ``cryptography`` directly).
* :mod:`.keyring`: versioned keys per purpose, loaded once per process.
* :mod:`.field_encryption`: encrypted ORM fields and blind indexes.
* :mod:`.secret_store`: where the master key (and other operator secrets) come from.

This package's ``__init__`` imports nothing on purpose: models import
:mod:`.field_encryption`, and the database-backed parts of the keyring import models.
"""
