"""Billing: usage."""
