"""Aayu Accounts: identity, billing and safe rollout for the Aayu Well medical scribe."""

__version__ = "0.1.0"
