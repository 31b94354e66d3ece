"""HTTP input shapes that more than one service accepts (the wire of their APIs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.geo import PlaceQuery


class LocationIn(BaseModel):
    """A place: a US ZIP code, a city and state, or coordinates."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    zip: str | None = Field(None, pattern=r"^\d{5}(-\d{4})?$", examples=["90012"])
    city: str | None = Field(None, min_length=1, max_length=100, examples=["Los Angeles"])
    state: str | None = Field(None, min_length=2, max_length=40, examples=["CA"])
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)

    def query(self) -> PlaceQuery:
        """The service layers' form of this place."""
        return PlaceQuery(self.zip, self.city, self.state, self.lat, self.lon)
