"""The production self-test's card-reader check against a real pcscd, vpcd and a virtual card.

The check starts the PC/SC monitor, as the kiosk does, before asking its status: asked
before, a healthy reader said "not started" and every production board failed.
"""

from __future__ import annotations

from typing import Any

import pytest

from staypoint.provisioning import selftest
from staypoint.provisioning.selftest import format_table, run_selftest

from .conftest import Pcscd
from .vcard import Handler, VirtualCard, garbled_card, uid_card

# pcscd allows one daemon per host: every PC/SC test runs on the same xdist worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pcscd")]


def _board(pcscd: Pcscd, reader_name: str | None = None) -> dict[str, Any]:
    """[hardware] of an enrolled board: a PC/SC reader, the on-screen keypad."""
    return {
        "reader": "pcsc",
        "reader_name": reader_name or pcscd.reader_name,
        "pinpad": "none",
        "printer": "sim",
    }


def _reader_rows(results: list[selftest.CheckResult]) -> list[tuple[str, bool, str]]:
    return [(r.check, r.ok, r.detail) for r in results if r.device == "card reader"]


def test_a_production_board_with_a_real_reader_passes(pcscd: Pcscd) -> None:
    results = run_selftest(_board(pcscd), production=True)
    assert _reader_rows(results) == [("status", True, "ok")], format_table(results)
    # The simulated printer of this test's board is still refused on a production board.
    assert [(r.device, r.check, r.ok) for r in results if r.device == "printer"] == [
        ("printer", "config", False)
    ]


def _tapped_when_asked(
    pcscd: Pcscd, monkeypatch: pytest.MonkeyPatch, card: Handler
) -> list[selftest.CheckResult]:
    """The interactive self-test, with ``card`` put on the reader when the prompt asks."""
    cards: list[VirtualCard] = []

    def technician(*args: object, **kw: Any) -> None:
        # The prompt is the technician's cue: the card goes on the reader after it, not before.
        print(*args, **kw)
        cards.append(VirtualCard(pcscd.port, card))

    monkeypatch.setattr(selftest, "print", technician, raising=False)
    try:
        # 30 s: a loaded machine took over 10 s to read the card (a read or a misread ends the
        # wait at once).
        results = run_selftest(_board(pcscd), production=True, interactive=True, timeout=30)
    finally:
        for placed in cards:
            placed.remove()
    assert len(cards) == 1, "the prompt came once"
    return results


def test_a_card_tapped_when_asked_is_read(pcscd: Pcscd, monkeypatch: pytest.MonkeyPatch) -> None:
    results = _tapped_when_asked(pcscd, monkeypatch, uid_card("04A1B2C3D4E5F6"))
    assert _reader_rows(results) == [("status", True, "ok"), ("tap", True, "read")], format_table(results)


def test_an_unreadable_card_is_told_apart_from_no_card(pcscd: Pcscd, monkeypatch: pytest.MonkeyPatch) -> None:
    results = _tapped_when_asked(pcscd, monkeypatch, garbled_card())
    assert _reader_rows(results) == [
        ("status", True, "ok"),
        ("tap", False, "a card was on the reader but could not be read"),
    ], format_table(results)


def test_no_matching_reader_fails_with_the_monitors_reason(pcscd: Pcscd) -> None:
    results = run_selftest(_board(pcscd, "No Such Reader"), production=True)
    rows = _reader_rows(results)
    assert len(rows) == 1 and rows[0][:2] == ("status", False), format_table(results)
    assert "no reader matching 'No Such Reader'" in rows[0][2]
