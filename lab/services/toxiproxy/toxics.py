"""Toxics: their types and attributes, request parsing, and the pure logic behind each effect.

Nothing here touches sockets or the event loop, so all of it is testable on its own. The
asyncio side that applies these effects to live connections is in `link.py`.

Units follow upstream: times in milliseconds (the slicer's `delay` in microseconds), the
bandwidth `rate` in KB/s with 1 KB = 1000 bytes, and `toxicity` the probability that a toxic
applies to a connection, decided each time the toxic starts on that connection.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import gojson
from .errors import BAD_REQUEST_BODY, INVALID_STREAM, INVALID_TOXIC_TYPE, ApiError

# Attribute names per toxic type, in the order upstream's structs declare (and print) them,
# with the Go struct name used in decode errors.
TOXIC_TYPES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "noop": ("NoopToxic", ()),
    "latency": ("LatencyToxic", ("latency", "jitter")),
    "bandwidth": ("BandwidthToxic", ("rate",)),
    "slow_close": ("SlowCloseToxic", ("delay",)),
    "timeout": ("TimeoutToxic", ("timeout",)),
    "reset_peer": ("ResetToxic", ("timeout",)),
    "slicer": ("SlicerToxic", ("average_size", "size_variation", "delay")),
    "limit_data": ("LimitDataToxic", ("bytes",)),
}

BANDWIDTH_SLICE_SECONDS = 0.1
"""Bandwidth sends a chunk larger than 100 ms worth of data in 100 ms slices, like upstream."""


class Direction(enum.IntEnum):
    """A link's direction: upstream is client -> server, downstream is server -> client."""

    UPSTREAM = 0
    DOWNSTREAM = 1

    @classmethod
    def parse(cls, value: str) -> Direction:
        """Parse a `stream` value case-insensitively.

        Raises:
            ValueError: neither "upstream" nor "downstream".
        """
        lowered = value.lower()
        if lowered == "upstream":
            return cls.UPSTREAM
        if lowered == "downstream":
            return cls.DOWNSTREAM
        raise ValueError(f"stream: invalid direction {value!r}")

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class Toxic:
    """A toxic as the API shows it. It is mutable: an update changes attributes in place.

    Attributes:
        name: unique within its proxy; defaults to `<type>_<stream>`.
        type: one of `TOXIC_TYPES`.
        stream: the stream as given ("upstream"/"downstream", any case).
        toxicity: probability in [0, 1] that the toxic applies to a connection.
        attributes: the type's integer attributes, all of them, in declared order.
    """

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)

    @property
    def direction(self) -> Direction:
        return Direction.parse(self.stream)

    def attr(self, name: str) -> int:
        return self.attributes.get(name, 0)

    def to_json(self) -> dict[str, Any]:
        """The toxic in upstream's field order."""
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": gojson.go_float(self.toxicity),
        }


def _bad_body(detail: str) -> ApiError:
    return BAD_REQUEST_BODY.error(detail)


def parse_new_toxic(body: bytes) -> tuple[Toxic, Any]:
    """Parse a create-toxic body into a toxic without its attributes, and the raw attributes.

    The caller checks the name for conflicts before decoding attributes with
    `decode_attributes`, in upstream's order of checks.

    Raises:
        ApiError: 400 for a bad body, an invalid stream or an unknown type.
    """
    try:
        raw = gojson.expect_object(gojson.decode(body), "toxics.ToxicWrapper") or {}
        where = "ToxicWrapper"
        name = gojson.get_str(raw, "name", "", where)
        toxic_type = gojson.get_str(raw, "type", "", where)
        stream = gojson.get_str(raw, "stream", "downstream", where)
        toxicity = gojson.get_float32(raw, "toxicity", 1.0, where)
        _, attributes = gojson.lookup(raw, "attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise gojson.DecodeError(
                f"json: cannot unmarshal {gojson.json_type(attributes)} into Go struct field "
                f"ToxicWrapper.attributes of type toxics.Toxic"
            )
    except gojson.DecodeError as exc:
        raise _bad_body(str(exc)) from exc
    try:
        Direction.parse(stream)
    except ValueError as exc:
        raise INVALID_STREAM.error() from exc
    if not name:
        name = f"{toxic_type}_{stream}"
    if toxic_type not in TOXIC_TYPES:
        raise INVALID_TOXIC_TYPE.error()
    return Toxic(name=name, type=toxic_type, stream=stream, toxicity=toxicity), attributes


def parse_toxic_update(body: bytes, toxic: Toxic) -> tuple[dict[str, int], float]:
    """Parse an update body against an existing toxic: its new attributes and toxicity.

    Attributes not in the body keep their values, as upstream decodes onto the live toxic.

    Raises:
        ApiError: 400 for a bad body or invalid attributes.
    """
    try:
        raw = gojson.expect_object(gojson.decode(body), "struct") or {}
        toxicity = gojson.get_float32(raw, "toxicity", toxic.toxicity, "")
        _, attributes = gojson.lookup(raw, "attributes")
    except gojson.DecodeError as exc:
        raise _bad_body(str(exc)) from exc
    return decode_attributes(toxic.type, attributes, toxic.attributes), toxicity


def decode_attributes(
    toxic_type: str, raw: object, current: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Decode and validate a type's attributes onto `current` (zeros when None).

    Raises:
        ApiError: 400 when a value is not a 64-bit integer or is out of range.
    """
    struct, names = TOXIC_TYPES[toxic_type]
    values = {name: (current or {}).get(name, 0) for name in names}
    try:
        obj = gojson.expect_object(raw, f"toxics.{struct}") if raw is not None else None
        if obj is not None:
            for name in names:
                values[name] = gojson.get_int64(obj, name, values[name], f"{struct}.attributes")
    except gojson.DecodeError as exc:
        raise _bad_body(str(exc)) from exc
    problem = validate_attributes(toxic_type, values)
    if problem is not None:
        raise _bad_body(f"{toxic_type}: {problem}")
    return values


def validate_attributes(toxic_type: str, attributes: Mapping[str, int]) -> str | None:
    """Why these attributes can't work, or None. Upstream checks nothing here; values it
    would hang or crash on (negative times, a slicer that can't split) are refused."""
    for name in TOXIC_TYPES[toxic_type][1]:
        if attributes.get(name, 0) < 0:
            return f"attribute {name} must not be negative"
    if toxic_type == "slicer":
        average = attributes.get("average_size", 0)
        variation = attributes.get("size_variation", 0)
        if average < 1:
            return "attribute average_size must be at least 1"
        if variation >= average:
            return "attribute size_variation must be smaller than average_size"
    return None


def applies(toxicity: float, rng: random.Random) -> bool:
    """Whether a toxic applies to a connection this time (upstream: `rand.Float32() < t`)."""
    return rng.random() < toxicity


def latency_delay(latency_ms: int, jitter_ms: int, rng: random.Random) -> float:
    """One chunk's delay in seconds: `latency` plus a jitter drawn from [-jitter, jitter)."""
    delay = latency_ms
    if jitter_ms > 0:
        delay += rng.randrange(2 * jitter_ms) - jitter_ms
    return delay / 1000.0


def remaining_delay(delay: float, received_at: float, now: float) -> float:
    """How much longer to hold a chunk received at `received_at` (0 when already due)."""
    return max(0.0, delay - (now - received_at))


@dataclass
class BandwidthShaper:
    """Paces one link's chunks at `rate` KB/s, carrying debt and oversleep across chunks.

    `split` charges a chunk's transfer time and cuts it into 100 ms slices plus a remainder;
    the caller waits 100 ms before each slice, `wait_before_last()` before the remainder, and
    reports the real wait to `record_wait` so oversleeping is credited to the next chunk.
    """

    debt: float = 0.0

    def split(self, size: int, rate: int) -> list[int]:
        """The slice sizes for a chunk of `size` bytes at `rate` KB/s (rate > 0).

        Raises:
            ValueError: `rate` is not positive.
        """
        if rate <= 0:
            raise ValueError("bandwidth rate must be positive to split")
        self.debt += size / (rate * 1000.0)
        piece = rate * 100
        sizes: list[int] = []
        remaining = size
        while remaining > piece:
            sizes.append(piece)
            remaining -= piece
            self.debt -= BANDWIDTH_SLICE_SECONDS
        sizes.append(remaining)
        return sizes

    def wait_before_last(self) -> float:
        return max(0.0, self.debt)

    def record_wait(self, elapsed: float) -> None:
        self.debt -= elapsed


def slice_spans(
    size: int, average: int, variation: int, rng: random.Random
) -> list[tuple[int, int]]:
    """Cut `size` bytes into spans of about `average` +/- `variation` bytes.

    Halves recursively with a random offset in [-variation, variation) until a part is within
    `average + variation`, as upstream does, so there is no bias to small pieces at either end.
    Requires `average >= 1` and `0 <= variation < average` (see `validate_attributes`).
    """
    if average < 1 or not 0 <= variation < average:
        raise ValueError("slicer needs average_size >= 1 and 0 <= size_variation < average_size")
    spans: list[tuple[int, int]] = []
    stack = [(0, size)]
    while stack:
        start, end = stack.pop()
        if (end - start) - average <= variation:
            spans.append((start, end))
            continue
        mid = start + (end - start) // 2
        if variation > 0:
            mid += rng.randrange(2 * variation) - variation
        stack.append((mid, end))
        stack.append((start, mid))
    return spans


@dataclass
class LimitCounter:
    """Bytes a `limit_data` toxic has let through on one link; kept across toxic updates."""

    transmitted: int = 0

    def admit(self, size: int, limit: int) -> tuple[int, bool]:
        """How many of `size` bytes may pass, and whether the link closes after them."""
        allowed = min(size, max(limit - self.transmitted, 0))
        self.transmitted += allowed
        return allowed, limit - self.transmitted <= 0
