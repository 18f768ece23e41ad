"""The fault proxy's pure toxic logic: parsing, validation, and each effect's arithmetic."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from lab.services.toxiproxy import gojson
from lab.services.toxiproxy.errors import ApiError
from lab.services.toxiproxy.toxics import (
    TOXIC_TYPES,
    BandwidthShaper,
    Direction,
    LimitCounter,
    Toxic,
    applies,
    decode_attributes,
    latency_delay,
    parse_new_toxic,
    parse_toxic_update,
    remaining_delay,
    slice_spans,
    validate_attributes,
)


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


# -- Go JSON rules --------------------------------------------------------------------------


def test_decode_reads_the_first_value_and_ignores_trailing_data() -> None:
    assert gojson.decode(b'  {"a": 1} trailing') == {"a": 1}


@pytest.mark.parametrize(("body", "message"), [(b"", "EOF"), (b"  \n", "EOF"), (b"{", "Expecting")])
def test_decode_rejects_empty_and_broken_bodies(body: bytes, message: str) -> None:
    with pytest.raises(gojson.DecodeError, match=message):
        gojson.decode(body)


def test_decode_rejects_nan() -> None:
    with pytest.raises(gojson.DecodeError):
        gojson.decode(b'{"a": NaN}')


def test_fields_match_case_insensitively_and_the_last_key_wins() -> None:
    assert gojson.get_str({"NAME": "a", "name": "b"}, "name", "", "P") == "b"
    assert gojson.get_str({"Name": "x"}, "name", "", "P") == "x"
    assert gojson.get_str({"name": None}, "name", "default", "P") == "default"


def test_integer_fields_refuse_fractions_bools_and_overflow() -> None:
    decoded = gojson.decode(b'{"a": 1.0, "b": true, "c": 9223372036854775808, "d": 7}')
    for name in ("a", "b", "c"):
        with pytest.raises(gojson.DecodeError, match="int64"):
            gojson.get_int64(decoded, name, 0, "T")
    assert gojson.get_int64(decoded, "d", 0, "T") == 7


def test_float32_fields_take_integers_and_fractions_but_not_strings() -> None:
    decoded = gojson.decode(b'{"a": 1, "b": 0.25, "c": "1", "d": 1e39}')
    assert gojson.get_float32(decoded, "a", 0.0, "T") == 1.0
    assert gojson.get_float32(decoded, "b", 0.0, "T") == 0.25
    for name in ("c", "d"):
        with pytest.raises(gojson.DecodeError, match="float32"):
            gojson.get_float32(decoded, name, 0.0, "T")


def test_encode_is_compact_and_escapes_html_like_go() -> None:
    assert (
        gojson.encode({"a": "<&>", "b": [1, True]}) == b'{"a":"\\u003c\\u0026\\u003e","b":[1,true]}'
    )
    assert gojson.go_float(1.0) == 1
    assert isinstance(gojson.go_float(1.0), int)
    assert gojson.go_float(0.5) == 0.5


# -- parsing toxics -------------------------------------------------------------------------


def test_a_new_toxic_defaults_to_downstream_full_toxicity_and_type_stream_name() -> None:
    toxic, attributes = parse_new_toxic(_body({"type": "latency", "attributes": {"latency": 5}}))
    assert (toxic.name, toxic.stream, toxic.toxicity) == ("latency_downstream", "downstream", 1.0)
    assert toxic.direction is Direction.DOWNSTREAM
    assert decode_attributes(toxic.type, attributes) == {"latency": 5, "jitter": 0}


def test_the_default_name_keeps_the_stream_as_given() -> None:
    toxic, _ = parse_new_toxic(_body({"type": "timeout", "stream": "UPSTREAM"}))
    assert toxic.name == "timeout_UPSTREAM"
    assert toxic.direction is Direction.UPSTREAM


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
        ({"type": "nonsense"}, "invalid toxic type"),
        ({"type": "latency", "toxicity": "high"}, "bad request body"),
        ({"type": "latency", "attributes": [1]}, "bad request body"),
        ({"type": 5}, "bad request body"),
        ([], "bad request body"),
    ],
)
def test_bad_toxic_bodies_are_400(body: object, message: str) -> None:
    with pytest.raises(ApiError, match=message) as caught:
        parse_new_toxic(_body(body))
    assert caught.value.status == 400


def test_every_type_lists_its_attributes_with_zero_defaults() -> None:
    assert decode_attributes("bandwidth", None) == {"rate": 0}
    assert decode_attributes("noop", {"anything": 1}) == {}
    assert list(TOXIC_TYPES["slicer"][1]) == ["average_size", "size_variation", "delay"]
    assert decode_attributes("slicer", {"average_size": 4}) == {
        "average_size": 4,
        "size_variation": 0,
        "delay": 0,
    }


@pytest.mark.parametrize(
    ("toxic_type", "attributes", "problem"),
    [
        ("latency", {"latency": -1}, "latency must not be negative"),
        ("timeout", {"timeout": -5}, "timeout must not be negative"),
        ("slicer", {"average_size": 0}, "average_size must be at least 1"),
        ("slicer", {"average_size": 4, "size_variation": 4}, "smaller than average_size"),
        ("limit_data", {"bytes": -1}, "bytes must not be negative"),
    ],
)
def test_unworkable_attributes_are_refused(
    toxic_type: str, attributes: dict[str, int], problem: str
) -> None:
    assert problem in (validate_attributes(toxic_type, attributes) or "")
    with pytest.raises(ApiError, match=problem):
        decode_attributes(toxic_type, attributes)


def test_attributes_must_be_integers() -> None:
    with pytest.raises(ApiError, match="int64"):
        decode_attributes("latency", gojson.decode(b'{"latency": 1.5}'))
    with pytest.raises(ApiError, match="int64"):
        decode_attributes("latency", {"latency": "100"})


def test_an_update_merges_attributes_and_keeps_the_toxicity_unless_given() -> None:
    toxic = Toxic("l", "latency", "downstream", 0.5, {"latency": 100, "jitter": 10})
    attributes, toxicity = parse_toxic_update(_body({"attributes": {"jitter": 3}}), toxic)
    assert attributes == {"latency": 100, "jitter": 3}
    assert toxicity == 0.5
    _, toxicity = parse_toxic_update(_body({"toxicity": 0}), toxic)
    assert toxicity == 0.0
    with pytest.raises(ApiError, match="EOF"):
        parse_toxic_update(b"", toxic)


def test_a_toxic_prints_in_upstream_field_order() -> None:
    toxic = Toxic("b", "bandwidth", "upstream", 1.0, {"rate": 10})
    assert gojson.encode(toxic.to_json()) == (
        b'{"attributes":{"rate":10},"name":"b","type":"bandwidth","stream":"upstream","toxicity":1}'
    )


def test_direction_parses_case_insensitively_and_refuses_others() -> None:
    assert Direction.parse("Downstream") is Direction.DOWNSTREAM
    assert str(Direction.UPSTREAM) == "upstream"
    with pytest.raises(ValueError):
        Direction.parse("both")


# -- effects --------------------------------------------------------------------------------


def test_toxicity_zero_never_applies_and_one_always_does() -> None:
    rng = random.Random(1)
    assert not any(applies(0.0, rng) for _ in range(200))
    assert all(applies(1.0, rng) for _ in range(200))
    hits = sum(applies(0.5, rng) for _ in range(2000))
    assert 800 < hits < 1200


def test_latency_jitter_stays_within_plus_minus_jitter() -> None:
    rng = random.Random(2)
    delays = {latency_delay(100, 20, rng) for _ in range(500)}
    assert min(delays) >= 0.080
    assert max(delays) < 0.120
    assert len(delays) > 10
    assert latency_delay(250, 0, rng) == 0.25


def test_remaining_delay_counts_time_already_waited() -> None:
    assert remaining_delay(0.3, received_at=10.0, now=10.1) == pytest.approx(0.2)
    assert remaining_delay(0.3, received_at=10.0, now=11.0) == 0.0


def test_bandwidth_charges_size_over_rate_and_slices_large_chunks() -> None:
    shaper = BandwidthShaper()
    assert shaper.split(500, rate=10) == [500]  # 10 KB/s: 500 bytes take 50 ms
    assert shaper.wait_before_last() == pytest.approx(0.05)
    shaper.record_wait(0.06)  # overslept by 10 ms: credited to the next chunk
    assert shaper.debt == pytest.approx(-0.01)
    sizes = shaper.split(2500, rate=10)  # more than 100 ms worth: 1000-byte slices
    assert sizes == [1000, 1000, 500]
    assert shaper.wait_before_last() == pytest.approx(0.04)
    with pytest.raises(ValueError):
        shaper.split(1, rate=0)


@pytest.mark.parametrize(
    ("size", "average", "variation"), [(1, 1, 0), (100, 10, 0), (32768, 100, 40)]
)
def test_slices_cover_the_chunk_in_order_within_the_size_bounds(
    size: int, average: int, variation: int
) -> None:
    spans = slice_spans(size, average, variation, random.Random(3))
    assert spans[0][0] == 0
    assert spans[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(0 < end - start <= average + variation for start, end in spans)
    if size > average + variation:
        assert len(spans) > 1


def test_slicing_a_short_chunk_leaves_it_whole() -> None:
    assert slice_spans(5, 10, 2, random.Random(0)) == [(0, 5)]
    with pytest.raises(ValueError):
        slice_spans(5, 0, 0, random.Random(0))


def test_limit_counter_truncates_and_closes_at_the_limit() -> None:
    counter = LimitCounter()
    assert counter.admit(6, limit=10) == (6, False)
    assert counter.admit(6, limit=10) == (4, True)
    assert counter.admit(6, limit=10) == (0, True)
    assert LimitCounter().admit(3, limit=0) == (0, True)
