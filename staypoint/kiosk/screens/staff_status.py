"""The node status page: head-office link, outbox, programme, devices."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from staypoint.edge.service import StaffProof
from staypoint.kiosk.screens.base import KioskScreen
from staypoint.kiosk.session import describe_age
from staypoint.localtime import stamp_text
from staypoint.loyalty.roles import Task, allows


class StaffStatusScreen(KioskScreen):
    """What a technician checks first."""

    MEMBER_DATA = True  # staff-only: goes with the idle timeout like member screens

    def __init__(self, proof: StaffProof) -> None:
        super().__init__(id="staff-status")
        self.proof = proof

    def compose_body(self) -> ComposeResult:
        yield Static("Node status", classes="title")
        yield Static("Reading…", id="node-status")
        yield Static("", id="device-status")
        with Horizontal(classes="actions"):
            yield Button("Refresh", id="refresh", classes="big")
            if allows(self.proof.role, Task.PRINTER_TEST):
                yield Button("Printer test page", id="test-page", classes="big")
            yield Button("Back", id="back", classes="big secondary")

    def on_mount(self) -> None:
        """First read."""
        self.load()

    def load(self) -> None:
        """status(now) and each device's health, off the UI thread."""
        kiosk, service, now = self.kiosk, self.service, self.kiosk.now()
        link = kiosk.link

        def read() -> tuple[dict[str, Any], list[Any]]:
            st = service.status(now)
            if link is not None:  # the agent's real connection, not the age of a message
                state = link.status()
                st["link_online"], st["link_problem"] = state.online, state.problem
            return st, kiosk.device_statuses()

        self.call(read, self.show)

    def show(self, answer: tuple[dict[str, Any], list[Any]]) -> None:
        """Render the figures a technician asks for on the phone."""
        st, devices = answer
        tz = self.kiosk.tz  # the replica keeps UTC; the technician reads the property's time
        online = st.get("link_online")
        if online is None:  # no agent link configured: judged from the replica's age
            online = st["staleness_s"] is not None and st["staleness_s"] <= self.kiosk.offline_after_s
        rows = [
            ("Node", f"{st['node']} · {st['property']} · epoch {st['epoch']}"),
            (
                "Head office",
                ("online" if online else "OFFLINE")
                + (f" ({st['link_problem']})" if not online and st.get("link_problem") else "")
                + f" · last contact {stamp_text(st['last_contact'], tz, none='never')}"
                f" ({describe_age(st['staleness_s'])} ago)",
            ),
            (
                "Outbox",
                f"{st['outbox_depth']} events waiting"
                f" · oldest {stamp_text(st['oldest_pending'], tz, none='-')}",
            ),
            ("Events", f"last seq {st['last_seq']}"),
            ("Offline exposure", f"{st['offline_exposure']:,} points"),
            ("Programme", f"version {st['program_version']}"),
            ("Members", f"{st['members']:,} on the replica"),
        ]
        if st.get("rejected_total"):
            latest = st["rejected"][0]
            rows.append(
                (
                    "Refused by HQ",
                    f"{st['rejected_total']} events · latest {latest['type']} seq {latest['seq']}: "
                    f"{latest['reason']}",
                )
            )
        self.query_one("#node-status", Static).update("\n".join(f"{k:<17} {v}" for k, v in rows))
        lines = ["Devices"]
        for d in devices:
            mark = "✓" if d.ok else "⚠"
            detail = f" ({d.detail})" if d.detail else ""
            lines.append(f"  {mark} {d.kind:<8} {d.driver:<7} {d.state.value}{detail}")
        self.query_one("#device-status", Static).update("\n".join(lines))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Refresh, test page, back."""
        match event.button.id:
            case "refresh":
                self.load()
            case "test-page":
                kiosk = self.kiosk
                self.call(kiosk.print_test_page, lambda text: self.notify(str(text)))
            case "back":
                self.app.pop_screen()
