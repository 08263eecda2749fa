"""Rollbacks and their incident reports."""
