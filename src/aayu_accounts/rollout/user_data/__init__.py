"""``/api/v1/me/data``: the per-user documents v2.5 kept in LocalStorage, on either store."""
