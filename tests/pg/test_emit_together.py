"""EventSources.emit(together=True) on PostgreSQL: calls waiting for one stream's turn share one
ledger transaction (group commit), each answered with its own events or refusal; a group that
fails is applied again call by call, so one call's failure stays its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from staypoint.central.application.sources import Draft, EventSources, OutOfBounds
from staypoint.central.ledger import Ledger
from staypoint.central.seed import seed_docs
from staypoint.central.store_pg import PgLedgerStore
from staypoint.loyalty.program import default_program, default_program_text
from tests.waits import wait_until

pytest_plugins = ["tests.pg_fixtures"]

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DOCS = seed_docs(default_program(), 6, NOW)
MEMBERS = [str(d["number"]) for d in DOCS]


def _ledger(url: str) -> Ledger:
    ledger = Ledger(PgLedgerStore(url))
    ledger.publish_program(default_program_text(), NOW)
    ledger.import_members([dict(d, points=0) for d in DOCS])
    return ledger


def _adjust(member: str, points: int, key: str) -> Draft:
    data = {"points": points, "reason": "test", "staff": "pms"}
    return Draft("points.adjusted", member, data, id=f"00000000-0000-4000-8000-{key:0>12}")


def _together(sources: EventSources, calls: list[tuple[list[Draft], Callable[[], None] | None]]) -> list[Any]:
    """Run ``calls`` at once on stream pms-SHA, all queued before the first takes the turn."""
    answers: list[Any] = [None] * len(calls)
    node = sources.stream("pms-SHA")
    turn = sources._lock(node)
    turn.acquire()  # nobody applies anything until every call is waiting

    def go(i: int) -> None:
        drafts, then = calls[i]
        try:
            answers[i] = sources.emit("pms-SHA", drafts, NOW, then=then, together=True)
        except Exception as exc:
            answers[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    queued = lambda: len(sources._waiting.get(node, [])) >= len(calls)  # noqa: E731
    wait_until(queued, 30, "every call queued", interval=0.01)
    turn.release()
    for t in threads:
        t.join(30)
    return answers


def test_calls_waiting_together_share_one_transaction_each_with_its_own_events(pg_url: str) -> None:
    ledger = _ledger(pg_url)
    sources = EventSources(ledger)
    groups: list[int] = []
    original = ledger.ingest_many

    def counted(batches: Any, now: datetime, **kw: Any) -> Any:
        groups.append(len(batches))
        return original(batches, now, **kw)

    ledger.ingest_many = counted  # type: ignore[method-assign]
    recorded: list[str] = []
    try:
        calls = [
            ([_adjust(m, 10 * (i + 1), f"a{i}")], lambda m=m: recorded.append(m))
            for i, m in enumerate(MEMBERS)
        ]
        answers = _together(sources, calls)  # type: ignore[arg-type]
        assert groups == [len(MEMBERS)]  # one ledger transaction for all of them
        seqs = sorted(ev.seq for events, _ in answers for ev in events)
        assert seqs == list(range(1, len(MEMBERS) + 1))  # one stream, no gap, each call its own
        assert sorted(recorded) == sorted(MEMBERS)  # every call's own record, in that transaction
        for i, m in enumerate(MEMBERS):
            member = ledger.member(m)
            assert member is not None and member["points"] == 10 * (i + 1)
    finally:
        ledger.store.close()


def test_a_failing_call_fails_alone_and_a_refused_one_is_refused_alone(pg_url: str) -> None:
    ledger = _ledger(pg_url)
    sources = EventSources(ledger)

    def broken() -> None:
        raise RuntimeError("this call's own record could not be written")

    try:
        calls: list[tuple[list[Draft], Callable[[], None] | None]] = [
            ([_adjust(MEMBERS[0], 5, "b0")], None),
            ([_adjust(MEMBERS[1], 5, "b1")], broken),
            ([_adjust(MEMBERS[2], 10**12, "b2")], None),  # outside the contract's bounds
            ([_adjust(MEMBERS[3], 5, "b3")], None),
        ]
        answers = _together(sources, calls)
        assert isinstance(answers[1], RuntimeError) and isinstance(answers[2], OutOfBounds)
        assert [len(answers[i][0]) for i in (0, 3)] == [1, 1]
        points = [ledger.member(m)["points"] for m in MEMBERS[:4]]  # type: ignore[index]
        assert points == [5, 0, 0, 5]  # the broken call's events went back with its record
        assert ledger.store.high_water("pms-SHA", 1) == 2 and ledger.store.alarms() == []
    finally:
        ledger.store.close()


def test_two_threads_ingesting_for_two_streams_at_once_keep_their_groups_apart(pg_url: str) -> None:
    """Ingest groups of different nodes overlap (``ingest_transaction``), on two threads of one
    process too (the API: two properties' stays, a stay and an enrolment): each group's
    read-ahead members and pending stays are its own thread's, nothing quarantined."""
    ledger = Ledger(PgLedgerStore(pg_url))
    ledger.publish_program(default_program_text(), NOW)
    docs = seed_docs(default_program(), 20, NOW)
    ledger.import_members([dict(d, points=0) for d in docs])
    sources = EventSources(ledger)
    errors: list[BaseException] = []

    def post(stream: str, members: list[str]) -> None:
        for i in range(60):
            data = {"points": 1, "reason": "test", "staff": "pms"}
            try:
                sources.emit(stream, [Draft("points.adjusted", members[i % len(members)], data)], NOW)
            except Exception as exc:
                errors.append(exc)

    numbers = [str(d["number"]) for d in docs]
    threads = [
        threading.Thread(target=post, args=("pms-AAA", numbers[:10])),
        threading.Thread(target=post, args=("pms-BBB", numbers[10:])),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and ledger.store.quarantined() == []
        assert sum(ledger.member(n)["points"] for n in numbers) == 120  # type: ignore[index]
    finally:
        ledger.store.close()
