"""Billing: revenue."""
