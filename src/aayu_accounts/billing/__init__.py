"""Billing: plans, one subscription per clinic, invoices, usage quotas, entitlements, dunning,
the payment providers (local simulation and Stripe) and Stripe's webhooks."""
