"""Billing errors, named after the state; ``code`` is the stable contract of API.md."""

from __future__ import annotations

from aayu_accounts.errors import AppError


class NoSubscription(AppError):
    status = 404
    code = "no_subscription"
    title = "The organization has no subscription"


class SubscriptionExists(AppError):
    status = 409
    code = "subscription_exists"
    title = "The organization already has a subscription"


class PaymentFailed(AppError):
    status = 402
    code = "payment_failed"
    title = "The payment was declined"


class PaymentMethodRequired(AppError):
    status = 422
    code = "payment_method_required"
    title = "A payment method is needed for a plan without a trial"


class UnknownPlan(AppError):
    status = 422
    code = "unknown_plan"
    title = "No such plan"


class InvalidSeats(AppError):
    status = 422
    code = "invalid_seats"
    title = "The seat count is not allowed for this plan"


class SeatLimitReached(AppError):
    status = 409
    code = "seat_limit"
    title = "Every paid seat is taken"


class SeatsBelowUsage(AppError):
    status = 409
    code = "seats_below_usage"
    title = "Fewer seats than active clinicians"


class SubscriptionNotChangeable(AppError):
    status = 409
    code = "subscription_not_changeable"
    title = "The subscription cannot be changed in its current status"


class ProviderUnavailable(AppError):
    status = 503
    code = "payment_provider_unavailable"
    title = "The payment provider is unavailable"


class UnknownOrganization(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class NotSupportedByProvider(AppError):
    status = 409
    code = "not_supported_by_provider"
    title = "The configured payment provider has no such page"


class InvalidReturnUrl(AppError):
    status = 422
    code = "invalid_return_url"
    title = "Return addresses must be on this service's public URL"


class PaymentProviderRefused(AppError):
    status = 409
    code = "payment_provider_refused"
    title = "The payment provider refused the request"
