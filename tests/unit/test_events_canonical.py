"""An event's canonical JSON is the same bytes whichever encoder writes it.

Head office compares a resent event's body with the stored one byte for byte; bodies stored
before the switch to orjson were written by the json module. A difference would raise a
false ``conflicting_body`` alarm and refuse a good event, so the two must agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from staypoint.loyalty.events import Event, event_from_dict, iso, uuid7

OLD = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode

# Every kind of value an event's data can hold once decoded from the wire (no floats: money
# travels as text, points as whole numbers). Text includes control characters, quotes,
# backslashes, U+2028 and characters outside the BMP; whole numbers go past 64 bits.
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), _text)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)


# ``data.points`` is the one data field the envelope itself checks (a whole number): the trip
# through ``event_from_dict`` below would refuse any other value, as it should.
@given(st.dictionaries(_text.filter(lambda k: k != "points"), _value, max_size=6))
def test_canonical_body_matches_the_json_encoder(data: dict[str, object]) -> None:
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    event = Event("sha-lobby-01", 1, 7, uuid7(now), iso(now), "feedback.recorded", None, 1, data)
    assert event.to_json() == OLD(event.to_dict())
    # And it survives the trip head office makes: decode, validate, encode again.
    assert event_from_dict(json.loads(event.to_json())).to_json() == event.to_json()


def test_a_body_with_a_number_past_64_bits_is_still_written() -> None:
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    event = Event("sha-lobby-01", 1, 7, uuid7(now), iso(now), "feedback.recorded", None, 1, {"n": 2**70})
    assert event.to_json() == OLD(event.to_dict())
    assert f'"n":{2**70}' in event.to_json()
