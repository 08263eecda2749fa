"""Billing: plan."""
