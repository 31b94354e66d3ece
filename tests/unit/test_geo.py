import time
from pathlib import Path

import pytest

from shared import geo
from shared.geo import (
    GeoPoint,
    Place,
    UnknownPlace,
    geocode,
    haversine_km,
    nearest_city,
    parse_city_state,
)


def distance(a: Place, b: Place) -> float:
    return haversine_km(a.lat, a.lon, b.lat, b.lon)


def test_geocode_zip_90210_is_beverly_hills() -> None:
    place = geocode(zip="90210")
    assert (place.city, place.state, place.zip) == ("Beverly Hills", "CA", "90210")
    assert place.lat == pytest.approx(34.09, abs=0.05)
    assert place.lon == pytest.approx(-118.41, abs=0.05)


def test_geocode_zip_plus_four_uses_the_five_digit_zip() -> None:
    assert geocode(zip="90210-1234") == geocode(zip="90210")


@pytest.mark.parametrize(
    ("text", "lat", "lon"),
    [
        ("Bakersfield, CA", 35.37, -119.02),
        ("Beverly Hills, CA", 34.07, -118.40),
        ("Nashville, TN", 36.17, -86.78),
        ("Panama City, FL", 30.16, -85.66),
        ("San Diego, CA", 32.72, -117.16),
        ("Los Angeles, CA", 34.05, -118.24),
    ],
)
def test_geocode_seed_cities(text: str, lat: float, lon: float) -> None:
    place = geocode(city=text)
    city, state = parse_city_state(text)
    assert (place.city, place.state, place.zip) == (city, state, None)
    assert place.lat == pytest.approx(lat, abs=0.1)
    assert place.lon == pytest.approx(lon, abs=0.1)


def test_geocode_city_with_separate_state_name_and_any_case() -> None:
    assert geocode(city="nashville", state="Tennessee") == geocode(city="Nashville, TN")
    assert geocode(city="SAN DIEGO", state="ca") == geocode(city="San Diego, CA")


def test_geocode_tolerates_saint_abbreviations() -> None:
    saint = geocode(city="Saint Louis, MO")
    assert geocode(city="St. Louis, MO") == saint
    assert geocode(city="St Louis, Missouri") == saint


def test_geocode_falls_back_to_zip_data_for_small_towns() -> None:
    # Too small for the geonames city lists; located from its ZIP code instead.
    place = geocode(city="Chloride, AZ")
    zip_place = geocode(zip="86431")
    assert (place.city, place.state) == ("Chloride", "AZ")
    assert distance(place, zip_place) < 5


def test_geocode_lat_lon_leaves_labels_empty() -> None:
    assert geocode(lat=34.05, lon=-118.25) == Place(None, None, None, 34.05, -118.25)


def test_geocode_lat_lon_win_over_zip_which_only_labels() -> None:
    place = geocode(zip="90210", lat=34.0, lon=-118.0)
    assert place == Place("Beverly Hills", "CA", "90210", 34.0, -118.0)


def test_geocode_prefers_zip_over_city() -> None:
    assert geocode(zip="90210", city="Nashville, TN").state == "CA"


def test_geocode_treats_empty_strings_as_missing() -> None:
    assert geocode(zip="", city="San Diego", state="CA").city == "San Diego"


def test_geocode_unknown_zip_raises() -> None:
    with pytest.raises(UnknownPlace, match="unknown US ZIP code '00000'"):
        geocode(zip="00000")
    with pytest.raises(UnknownPlace, match="unknown US ZIP code 'abcde'"):
        geocode(zip="abcde")


def test_geocode_unknown_city_raises() -> None:
    with pytest.raises(UnknownPlace, match="unknown city 'Foo, ZZ'"):
        geocode(city="Foo, ZZ")
    with pytest.raises(UnknownPlace, match="unknown city 'Nowhereville, CA'"):
        geocode(city="Nowhereville", state="CA")


def test_geocode_city_without_state_raises() -> None:
    with pytest.raises(UnknownPlace, match="unknown city 'Nashville'"):
        geocode(city="Nashville")


def test_geocode_nothing_raises() -> None:
    with pytest.raises(UnknownPlace, match="give a zip, a city and state, or lat and lon"):
        geocode()


def test_geocode_rejects_half_or_out_of_range_coordinates() -> None:
    with pytest.raises(UnknownPlace, match="both lat and lon"):
        geocode(lat=34.0)
    with pytest.raises(UnknownPlace, match="latitude"):
        geocode(lat=91.0, lon=0.0)
    with pytest.raises(UnknownPlace, match="longitude"):
        geocode(lat=0.0, lon=-181.0)
    with pytest.raises(UnknownPlace, match="latitude"):
        geocode(lat=float("nan"), lon=0.0)


def test_unknown_place_is_a_value_error() -> None:
    assert issubclass(UnknownPlace, ValueError)


def test_parse_city_state() -> None:
    assert parse_city_state("Beverly Hills, CA") == ("Beverly Hills", "CA")
    assert parse_city_state(" panama city ,  florida ") == ("panama city", "FL")
    assert parse_city_state("Helena, MT") == ("Helena", "MT")
    assert parse_city_state("Raleigh North Carolina") == ("Raleigh", "NC")
    assert parse_city_state("New York, N.Y.") == ("New York", "NY")


def test_place_point() -> None:
    assert Place("X", "CA", None, 1.0, 2.0).point == GeoPoint(1.0, 2.0)


def test_distance_los_angeles_to_san_diego() -> None:
    la, sd = geocode(city="Los Angeles, CA"), geocode(city="San Diego, CA")
    assert distance(la, sd) == pytest.approx(179, abs=10)


def test_distance_nashville_to_los_angeles() -> None:
    nashville, la = geocode(city="Nashville, TN"), geocode(city="Los Angeles, CA")
    assert distance(nashville, la) == pytest.approx(2880, abs=60)


def test_haversine_is_zero_for_one_point_and_symmetric() -> None:
    assert haversine_km(34.0, -118.0, 34.0, -118.0) == 0
    assert haversine_km(0, 0, 10, 10) == pytest.approx(haversine_km(10, 10, 0, 0))


def test_haversine_half_circumference_for_antipodes() -> None:
    assert haversine_km(0, 0, 0, 180) == pytest.approx(3.141592653589793 * 6371.0088)


@pytest.mark.parametrize(
    ("lat", "lon", "city", "state"),
    [
        (34.052231, -118.243683, "Los Angeles", "CA"),
        (40.7128, -74.0060, "New York City", "NY"),
        (61.2, -149.9, "Anchorage", "AK"),
    ],
)
def test_nearest_city_names_the_city_a_point_is_in(
    lat: float, lon: float, city: str, state: str
) -> None:
    place = nearest_city(lat, lon)
    assert place is not None and (place.city, place.state) == (city, state)
    assert place.zip is None


def test_nearest_city_is_none_far_out_at_sea() -> None:
    assert nearest_city(30.0, -140.0) is None


def test_nearest_city_is_a_grid_lookup_not_a_scan() -> None:
    nearest_city(34.0, -118.0)  # the grid is built once
    started = time.perf_counter()
    for i in range(200):
        nearest_city(30.0 + (i % 15), -120.0 + (i % 40))
    assert (time.perf_counter() - started) / 200 < 0.02


def test_the_tables_kept_on_disk_read_back_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASKDOC_GEO_CACHE_DIR", str(tmp_path))
    path = geo._cache_path()
    assert path is not None and path.parent == tmp_path
    tables = geo._indexes()
    geo._write_cache(path, tables)
    again = geo._read_cache(path)
    assert again is not None
    # Same entries in the same order: the grid, and so nearest_city's ties, come out alike.
    assert list(again.zips.items()) == list(tables.zips.items())
    assert list(again.cities.items()) == list(tables.cities.items())
    assert again.named == tables.named
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_cache_file_that_is_not_ours_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "geo.json"
    for text in ("{not json", '{"zips": [[1]], "cities": []}', "[]"):
        bad.write_text(text)
        assert geo._read_cache(bad) is None
    monkeypatch.setenv("ASKDOC_GEO_CACHE_DIR", "off")
    assert geo._cache_path() is None
