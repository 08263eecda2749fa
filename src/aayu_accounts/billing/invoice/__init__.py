"""Billing: invoice."""
