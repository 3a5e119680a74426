"""Members' profiles on both stores: the same calls, the same answers (SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from staypoint.central.profiles import PgProfileStore, ProfileError, Profiles, ProfileStore, open_profiles
from staypoint.central.store import StoreConfigError

pytest_plugins = ["tests.pg_fixtures"]

AT = "2026-03-01T10:00:00.000Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def profiles(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Profiles]:
    if request.param == "sqlite":
        p: Profiles = open_profiles(str(tmp_path / "profiles.db"))
        assert isinstance(p, ProfileStore)
    else:
        p = open_profiles(None, ledger=request.getfixturevalue("pg_url"))
        assert isinstance(p, PgProfileStore)
    yield p
    p.close()


def test_crud_consent_and_lookups(profiles: Profiles) -> None:
    a = profiles.upsert(
        "0000000018",
        at=AT,
        full_name="Mei Lin",
        email="Mei@Example.com",
        phone="+49 30 1234567",
        birth_date=date(1990, 11, 23),
        language="zh",
        time_zone="Asia/Shanghai",
    )
    assert (a.full_name, a.email, a.phone, a.language, a.joined) == (
        "Mei Lin",
        "Mei@Example.com",
        "+49301234567",
        "zh",
        date(2026, 3, 1),
    )
    profiles.upsert("0000000026", at=AT, full_name="Bob Brown")
    # Only the fields given change; a second upsert of the same member is an update.
    b = profiles.upsert("0000000018", at="2026-03-02T00:00:00.000Z", home_property="SHA")
    assert (b.full_name, b.home_property, b.updated_at) == ("Mei Lin", "SHA", "2026-03-02T00:00:00.000Z")
    assert profiles.by_email("mei@example.COM ") == b
    assert profiles.by_phone("+49301234567") == b
    assert profiles.by_email("nobody@example.com") is None
    assert [p.member for p in profiles.search_name("mei")] == ["0000000018"]
    assert sorted(profiles.many(["0000000018", "0000000026", "0000000034"])) == ["0000000018", "0000000026"]
    assert [p.member for p in profiles.all(batch=1)] == ["0000000018", "0000000026"]
    with pytest.raises(ProfileError, match="already used"):
        profiles.upsert("0000000026", at=AT, email="mei@example.com")
    with pytest.raises(ProfileError):
        profiles.upsert("0000000026", at=AT, language="fr")
    assert profiles.get("0000000026") is not None and profiles.get("0000000026").email is None  # type: ignore[union-attr]

    profiles.set_consent("0000000018", "email", True, source="kiosk", at=AT)
    profiles.set_consent(
        "0000000018", "email", False, source="unsubscribe-link", at="2026-03-03T00:00:00.000Z"
    )
    assert profiles.consent_log("0000000018") == [
        ("email", True, "kiosk", AT),
        ("email", False, "unsubscribe-link", "2026-03-03T00:00:00.000Z"),
    ]
    with pytest.raises(ProfileError, match="no profile"):
        profiles.set_consent("0000000042", "sms", True, source="kiosk", at=AT)
    assert profiles.mark_bounced("MEI@example.com", AT) == 1
    mei = profiles.get("0000000018")
    assert mei is not None and mei.email_bounced and not mei.may_contact("email")

    profiles.upsert("0000000018", at=AT, referral_code="ABCD-EFGH")
    assert profiles.by_referral_code("abcd-efgh") is not None


def test_add_many_is_all_or_nothing(profiles: Profiles) -> None:
    profiles.add_many(
        [
            {"member": "0000000018", "full_name": "A", "email": "a@example.com"},
            {"member": "0000000026", "full_name": "B", "email": None},
        ],
        [("0000000018", "1 High Street")],
        AT,
    )
    assert profiles.address("0000000018") == "1 High Street" and profiles.address("0000000026") is None
    with pytest.raises(ProfileError):
        profiles.add_many([{"member": "0000000034", "full_name": "C", "email": "A@example.com"}], [], AT)
    assert profiles.get("0000000034") is None


def test_the_opener_refuses_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="--profiles is needed"):
        open_profiles(None, ledger=str(tmp_path / "ledger.db"))
    with pytest.raises(StoreConfigError, match="no folder"):
        open_profiles(str(tmp_path / "missing" / "p.db"))
    with pytest.raises(StoreConfigError, match="cannot"):
        open_profiles("postgresql://sp@/x?host=/nonexistent-socket-dir&connect_timeout=1")
