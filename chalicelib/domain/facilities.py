"""Facilities: the healthcare providers users pay. A facility has a name of 1 to
``MAX_NAME_LENGTH`` characters (stripped) and one account per currency, opened with it."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.errors import InvalidRequest

MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    created_at: str

    @classmethod
    def new(cls, facility_id: str, name: str, at: str) -> Facility:
        """Raises InvalidRequest: the name is blank or longer than MAX_NAME_LENGTH."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidRequest(
                f"name must have 1 to {MAX_NAME_LENGTH} characters",
                [{"field": "name", "message": "blank or too long"}],
            )
        return cls(id=facility_id, name=name, created_at=at)
