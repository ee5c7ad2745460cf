"""The one error of a request the explorer refuses (the web app turns it into its JSON answer)."""
from __future__ import annotations

from typing import Optional


class ApiError(Exception):
    """A request the explorer refuses: ``status`` (400, 404, 409, 413, 503), one line, the field at fault."""

    def __init__(self, status: int, message: str, field_name: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field_name


__all__ = ["ApiError"]
