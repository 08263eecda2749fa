"""The provider this process uses, chosen by ``AAYU_PAYMENT_PROVIDER``."""

from __future__ import annotations

from aayu_accounts.billing.payment_provider.base import PaymentProvider
from aayu_accounts.billing.payment_provider.local import LocalProvider
from aayu_accounts.billing.payment_provider.stripe import StripeProvider
from aayu_accounts.config import PaymentProvider as ProviderChoice
from aayu_accounts.config import Settings

_instances: dict[tuple[str, str | None, str | None], PaymentProvider] = {}


class LocalProviderInProduction(RuntimeError):
    """The simulation must never stand in for real payments."""


def get_provider(settings: Settings) -> PaymentProvider:
    if settings.payment_provider is ProviderChoice.LOCAL:
        if settings.is_production:
            raise LocalProviderInProduction("the local payment provider is refused in production")
        key: tuple[str, str | None, str | None] = ("local", None, None)
        if key not in _instances:
            _instances[key] = LocalProvider()
        return _instances[key]
    key = ("stripe", settings.stripe_api_key, settings.stripe_api_base)
    if key not in _instances:
        _instances[key] = StripeProvider.from_settings(settings)
    return _instances[key]
