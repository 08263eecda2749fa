"""Billing: subscription."""
