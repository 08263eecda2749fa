"""Importing v2.5 users into the new identity store (``aayu-accounts migrate legacy-users``)."""
