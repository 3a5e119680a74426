"""PC/SC reader against a real pcscd with vpcd virtual readers and a virtual card."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from staypoint.kiosk.hardware.reader.base import CardRead
from staypoint.kiosk.hardware.reader.pcsc import STAYPOINT_AID, PcscCardMonitor, PcscReader
from staypoint.kiosk.hardware.status import DeviceState
from tests.waits import wait_until_async

from .conftest import Pcscd
from .vcard import VirtualCard, flaky_card, garbled_card, member_file_card, uid_card

# pcscd allows one daemon per host: every PC/SC test runs on the same xdist worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pcscd")]


@pytest.fixture
async def reader(pcscd: Pcscd) -> AsyncIterator[tuple[PcscReader, list[CardRead]]]:
    monitor = PcscCardMonitor(pcscd.reader_name, poll_ms=100, retry_s=0.1)
    rdr = PcscReader(monitor, reader_name=pcscd.reader_name)
    reads: list[CardRead] = []
    await rdr.start(reads.append)
    await wait_until_async(lambda: rdr.status().state is DeviceState.OK, 20, "the reader OK")
    try:
        yield rdr, reads
    finally:
        await rdr.stop()
        monitor.stop()


async def test_uid_card_insert_and_remove(pcscd: Pcscd, reader: tuple[PcscReader, list[CardRead]]) -> None:
    rdr, reads = reader
    card = VirtualCard(pcscd.port, uid_card("04A1B2C3D4E5F6"))
    try:
        await wait_until_async(lambda: len(reads) == 1, 20, "one card read")
        assert reads[0] == CardRead(uid="04A1B2C3D4E5F6", source=f"pcsc:{pcscd.reader_name}")
        assert card.apdus[0] == bytes.fromhex("FFCA000000")
        assert rdr.card_present
    finally:
        card.remove()
    await wait_until_async(lambda: rdr.removals == 1, 20, "the card's removal")
    assert not rdr.card_present
    assert rdr.garbled == 0


async def test_contact_card_member_file(pcscd: Pcscd, reader: tuple[PcscReader, list[CardRead]]) -> None:
    _, reads = reader
    card = VirtualCard(pcscd.port, member_file_card("7001234567", STAYPOINT_AID))
    try:
        await wait_until_async(lambda: len(reads) == 1, 20, "one card read")
    finally:
        card.remove()
    assert reads[0].member_number == "7001234567"
    assert reads[0].uid is None
    assert card.apdus[1] == bytes.fromhex("00A4040007F0535441595054")
    assert card.apdus[2] == bytes.fromhex("00B0000000")


async def test_garbled_card_is_counted_not_raised(
    pcscd: Pcscd, reader: tuple[PcscReader, list[CardRead]]
) -> None:
    rdr, reads = reader
    card = VirtualCard(pcscd.port, garbled_card())
    try:
        await wait_until_async(lambda: rdr.garbled == 1, 20, "the garbled card counted")
    finally:
        card.remove()
    assert reads == []
    assert rdr.status().state is DeviceState.OK


async def test_a_card_that_fails_its_first_exchange_is_read_on_the_next(
    pcscd: Pcscd, reader: tuple[PcscReader, list[CardRead]]
) -> None:
    rdr, reads = reader
    card = VirtualCard(pcscd.port, flaky_card("04A1B2C3D4E5F6"))
    try:
        await wait_until_async(lambda: len(reads) == 1, 20, "the card read on a retry")
    finally:
        card.remove()
    assert reads[0].uid == "04A1B2C3D4E5F6"
    assert rdr.garbled == 0
    assert [a for a in card.apdus if a[:2] == b"\xff\xca"] == [bytes.fromhex("FFCA000000")] * 2


async def test_pcscd_stopped_then_restarted(pcscd: Pcscd, reader: tuple[PcscReader, list[CardRead]]) -> None:
    rdr, reads = reader
    try:
        pcscd.stop()
        await wait_until_async(lambda: rdr.status().state is DeviceState.MISSING, 20, "the reader MISSING")
        assert "PC/SC" in rdr.status().detail
    finally:
        pcscd.start()
    await wait_until_async(lambda: rdr.status().state is DeviceState.OK, 20, "the reader OK")
    card = VirtualCard(pcscd.port, uid_card("0A0B0C0D"))
    try:
        await wait_until_async(lambda: len(reads) == 1, 20, "one card read")
    finally:
        card.remove()
    assert reads[0].uid == "0A0B0C0D"
