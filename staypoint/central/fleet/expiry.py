"""Expiry ahead of time: the broker's CRLs and the nodes' certificates.

Two rules join the fleet's alerts (:mod:`.alerts`), each firing once and clearing once:

========= ===========================================================================
``crl``    a CRL the broker checks has its ``nextUpdate`` within ``crl_days`` (30), or
           is missing or unreadable: past it the broker refuses every client
``cert``   a node's certificate expires within ``cert_days`` (30) (re-enrol the board)
========= ===========================================================================

Where it reads: the CRL files (by default the provisioning folder's ``ca/crl.pem`` and
``office-ca/crl.pem``; better, the copies the broker actually reads), and the provisioning
folder's enrolment records: ``nodes.json`` (node → certificate serial, property, revoked)
and the CA's ``issued.json`` (serial → notAfter, written as each certificate is signed).
A node enrolled before ``issued.json`` existed is taken as enrolled_at + 825 days, the
CA's validity. Files are read again only when they change (size and mtime).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from staypoint.central.fleet.alerts import Alert
from staypoint.provisioning.pki import NODE_CERT_DAYS, crl_next_update, issued_certificates

__all__ = ["ExpirySettings", "ExpiryWatch"]


@dataclass(frozen=True)
class ExpirySettings:
    """What to watch and how far ahead (days)."""

    provisioning: Path | None = None
    crls: tuple[Path, ...] = ()
    crl_days: float = 30.0
    cert_days: float = 30.0

    def crl_paths(self) -> tuple[Path, ...]:
        """The CRLs given, or the provisioning folder's two."""
        if self.crls or self.provisioning is None:
            return self.crls
        return (self.provisioning / "ca" / "crl.pem", self.provisioning / "office-ca" / "crl.pem")


@dataclass
class _Cached:
    key: tuple[int, int] | None = None
    value: Any = None


@dataclass
class ExpiryWatch:
    """Evaluates the ``crl`` and ``cert`` rules at a given time (the clock is the caller's)."""

    settings: ExpirySettings
    _cache: dict[Path, _Cached] = field(default_factory=dict)

    def _read(self, path: Path, parse: Callable[[Path], Any]) -> Any:
        """``parse(path)``, again only when the file changed; an ``OSError``/``ValueError``
        (missing, unreadable, not what it should be) is returned as the exception."""
        cached = self._cache.setdefault(path, _Cached())
        try:
            st = path.stat()
            key = (st.st_size, st.st_mtime_ns)
        except OSError as err:
            cached.key, cached.value = None, err
            return err
        if cached.key != key:
            try:
                cached.value = parse(path)
            except (OSError, ValueError, KeyError, TypeError) as err:
                cached.value = err
            cached.key = key
        return cached.value

    def node_expiries(self) -> dict[str, tuple[str, dt.datetime]]:
        """node → (property, notAfter) for every enrolled, unrevoked node."""
        prov = self.settings.provisioning
        if prov is None:
            return {}
        nodes = self._read(prov / "nodes.json", lambda p: json.loads(p.read_text("utf-8")).get("nodes", {}))
        issued = self._read(prov / "ca" / "issued.json", lambda p: issued_certificates(p.parent))
        if isinstance(nodes, Exception):
            return {}
        known = issued if isinstance(issued, dict) else {}
        out: dict[str, tuple[str, dt.datetime]] = {}
        for node, rec in nodes.items():
            if not isinstance(rec, dict) or rec.get("revoked_at"):
                continue
            try:
                serial = int(str(rec["serial"]), 16)
                if serial in known:
                    not_after = known[serial][1]
                else:
                    not_after = dt.datetime.fromisoformat(str(rec["enrolled_at"])) + dt.timedelta(
                        days=NODE_CERT_DAYS
                    )
            except (KeyError, ValueError):
                continue
            if not_after.tzinfo is None:
                not_after = not_after.replace(tzinfo=dt.UTC)
            out[str(node)] = (str(rec.get("property", "")), not_after)
        return out

    def conditions(self, now: dt.datetime) -> list[tuple[Alert, str]]:
        """(alert, property) for every ``crl`` and ``cert`` condition holding at ``now``."""
        out: list[tuple[Alert, str]] = []
        s = self.settings
        for path in s.crl_paths():
            due = self._read(path, lambda p: crl_next_update(p.read_bytes()))
            name = f"crl:{path}"
            if isinstance(due, Exception):
                out.append((Alert("crl", name, f"CRL {path} cannot be read: {due}"), ""))
                continue
            left = due - now
            if left <= dt.timedelta(days=s.crl_days):
                verb = "expired" if left.total_seconds() <= 0 else "expires"
                out.append(
                    (
                        Alert(
                            "crl",
                            name,
                            f"CRL {verb} {due:%Y-%m-%d %H:%M} UTC ({_days(left)}): "
                            "run `staypoint provision crl renew` (staypoint-crl-renew.timer)",
                        ),
                        "",
                    )
                )
        for node, (prop, not_after) in sorted(self.node_expiries().items()):
            left = not_after - now
            if left <= dt.timedelta(days=s.cert_days):
                verb = "expired" if left.total_seconds() <= 0 else "expires"
                out.append(
                    (
                        Alert(
                            "cert", node, f"certificate {verb} {not_after:%Y-%m-%d} ({_days(left)}): re-enrol"
                        ),
                        prop,
                    )
                )
        return out

    def days_left(self, now: dt.datetime) -> tuple[float | None, float | None]:
        """(days to the nearest readable CRL's ``nextUpdate``, days to the nearest enrolled
        node's certificate expiry), negative once past; None when there is none to read.
        For /metrics: an unreadable CRL is the ``crl`` alert's to report."""
        dues = [
            due
            for path in self.settings.crl_paths()
            if not isinstance(due := self._read(path, lambda p: crl_next_update(p.read_bytes())), Exception)
        ]
        certs = [not_after for _prop, not_after in self.node_expiries().values()]
        crl = (min(dues) - now).total_seconds() / 86400 if dues else None
        cert = (min(certs) - now).total_seconds() / 86400 if certs else None
        return crl, cert


def _days(left: dt.timedelta) -> str:
    days = left.total_seconds() / 86400
    return f"{days:.0f} days left" if days > 0 else f"{-days:.0f} days ago"
