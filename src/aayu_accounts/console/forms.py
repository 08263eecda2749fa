"""Form values through the API's own Pydantic schemas, and errors shaped for templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aayu_accounts.console.messages import error_text
from aayu_accounts.errors import AppError, ValidationFailed

M = TypeVar("M", bound=BaseModel)


@dataclass
class FormError:
    """What a template shows: the sentence, the stable code, details (password reasons,
    invalid fields) and the field to focus."""

    message: str
    code: str
    details: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    status: int = 400

    @classmethod
    def of(cls, error: AppError) -> FormError:
        details = [str(r.get("message", "")) for r in error.extra.get("reasons", []) or []]
        fields = [str(f) for f in error.extra.get("fields", []) or []]
        retry_after = error.extra.get("retry_after")
        if isinstance(retry_after, int) and retry_after > 0:
            minutes = max(1, -(-retry_after // 60))
            details.append(f"Try again in {minutes} minute{'s' if minutes > 1 else ''}.")
        message = error.detail if error.code == "validation_error" and fields else error_text(error)
        return cls(message, error.code, [d for d in details if d], fields, error.status)


_FIELD_LABELS = {
    "email": "Email address",
    "password": "Password",
    "new_password": "New password",
    "current_password": "Current password",
    "full_name": "Full name",
    "organization_name": "Clinic name",
    "token": "Link",
    "role": "Role",
    "name": "Name",
    "version": "Version",
    "idle_timeout_minutes": "Idle timeout",
    "code": "Code",
}


def parse(model: type[M], values: dict[str, Any]) -> M | AppError:
    """``model`` validated from form values, or a ``validation_error`` naming the fields."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        names = []
        for err in exc.errors():
            loc = err.get("loc", ())
            name = str(loc[0]) if loc else "form"
            if name not in names:
                names.append(name)
        labels = ", ".join(_FIELD_LABELS.get(n, n) for n in names)
        return ValidationFailed(f"Check these fields: {labels}.", extra={"fields": names})


def validation_message(error: AppError) -> str:
    return error.detail if error.code == "validation_error" else error_text(error)
