"""``staypoint provision ...``: CA, tokens, enrolment (board and head office), revoke, self-test.

``register(sub)`` adds the ``provision`` command to the top-level subparsers. Commands
that read something take ``--json``; every error is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from staypoint.central.store import (
    LedgerStore,
    StoreConfigError,
    add_store_option,
    open_ledger_store,
    store_url,
)
from staypoint.entry import run_group
from staypoint.mqtt_tls import OFFICE_PORT
from staypoint.provisioning.enrol import EnrolError, enrol, parse_broker
from staypoint.provisioning.enrol_service import EnrolService, NodeRecord, ProvisioningState
from staypoint.provisioning.pki import CRL_RENEW_BEFORE_DAYS, CSRRejected, TLSFiles
from staypoint.provisioning.selftest import format_table, is_production, load_hardware, run_selftest
from staypoint.provisioning.tokens import TokenRefused, parse_ttl

__all__ = ["DEFAULT_STATE", "main", "register"]

DEFAULT_STATE = "/var/lib/staypoint-central/provisioning"
DEFAULT_CONFIG = "/etc/staypoint/node.toml"


def _fail(message: str) -> NoReturn:
    print(f"staypoint: {message}", file=sys.stderr)
    raise SystemExit(1)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


def _guard(fn: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    """Turn the domain errors of provisioning into one stderr line and exit 1."""

    def run(args: argparse.Namespace) -> None:
        try:
            fn(args)
        except (EnrolError, TokenRefused, CSRRejected, ValueError, KeyError, OSError, TimeoutError) as err:
            text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            _fail(str(text))

    run.__doc__ = fn.__doc__
    return run


# -- head office ---------------------------------------------------------------------------------


def cmd_ca_init(args: argparse.Namespace) -> None:
    """Fleet and head-office CAs, broker, head-office and enrol certificates, card key."""
    state = ProvisioningState(Path(args.state))
    done = state.init(broker_hosts=tuple(args.broker_host), broker_ips=tuple(args.broker_ip))
    data = {"state": str(state.directory), **done, "tls": str(state.tls_dir)}
    text = "\n".join(f"{k:12} {v}" for k, v in done.items())
    text += (
        f"\nbroker and client certificates in {state.tls_dir}; CRLs at {state.ca_dir / 'crl.pem'} "
        f"(fleet listener) and {state.office_ca_dir / 'crl.pem'} (head office's listener)"
    )
    if "replaced" in done.values():
        text += "\nan old certificate was revoked: copy the fleet CRL to the broker and reload it"
    _emit(args, data, text)


def cmd_token_create(args: argparse.Namespace) -> None:
    """A one-time enrolment token for one node (shown once: head office keeps its hash)."""
    state = ProvisioningState(Path(args.state))
    state.ca()  # refuse early when there is no CA to sign with
    ttl = parse_ttl(args.ttl)
    now = dt.datetime.now(dt.UTC)
    token = state.tokens.create(args.node, args.property, ttl, now=now)
    expires = (now + ttl).isoformat(timespec="seconds")
    _emit(
        args,
        {"node": args.node, "property": args.property, "token": token, "expires": expires},
        f"{token}\n(one use, for node {args.node} at {args.property}, expires {expires})",
    )


def cmd_token_list(args: argparse.Namespace) -> None:
    """Tokens issued, with their state (the secrets themselves are not kept)."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    for rec in ProvisioningState(Path(args.state)).tokens.records():
        status = (
            "used"
            if rec.used_at
            else ("expired" if dt.datetime.fromisoformat(rec.expires) <= now else "open")
        )
        rows.append({"node": rec.node, "property": rec.property, "expires": rec.expires, "status": status})
    text = "\n".join(f"{r['node']:24} {r['property']:10} {r['status']:8} {r['expires']}" for r in rows)
    _emit(args, rows, text or "no tokens")


def _ledger_store(args: argparse.Namespace) -> LedgerStore | None:
    """The ledger ``--store URL`` / ``--db PATH`` names (``--ledger PATH``, the older name of
    ``--db``, too), or None when none was given. It must exist: ``central serve`` makes it."""
    if not (getattr(args, "store", None) or getattr(args, "db", None)):
        return None
    try:
        return open_ledger_store(store_url(args), must_exist=True)
    except StoreConfigError as exc:
        _fail(str(exc))


def cmd_serve(args: argparse.Namespace) -> None:
    """Answer enrolment requests on the broker until SIGTERM / SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = ProvisioningState(Path(args.state))
    state.ca()
    host, port = parse_broker(args.broker)
    on_enrolled: Callable[[NodeRecord], None] | None = None
    program: Callable[[], str]
    store = _ledger_store(args)
    if store is not None:
        from staypoint.central.ledger import Ledger

        ledger = Ledger(store)

        def on_enrolled(record: NodeRecord) -> None:
            ledger.register_node(record.node, record.voucher_public_key, record.property)

        def program() -> str:
            version = ledger.store.latest_program_version()
            text = ledger.store.program(version) if version is not None else None
            if text is None:
                raise ValueError("the ledger holds no programme: publish one first")
            return text

    elif args.program:
        from staypoint.loyalty.program import ProgramError, load_program

        try:  # a node would refuse a bad programme only after enrolling: refuse it here
            text = load_program(Path(args.program)).source_text
        except ProgramError as exc:
            _fail(str(exc))

        def program() -> str:
            return text

    else:
        from staypoint.loyalty.program import default_program_text

        program = default_program_text

    def publish_crl() -> None:
        log = logging.getLogger("staypoint.provisioning")
        log.info("CRL published: %s", _publish_crl(state, args))

    service = EnrolService(
        state,
        program,
        host=host,
        port=port,
        on_enrolled=on_enrolled,
        on_crl_changed=publish_crl,
        backup_url=args.backup_url,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    service.start()
    print(f"enrolment service answering on {host}:{port}", file=sys.stderr, flush=True)
    done.wait()
    service.stop()


def _publish_crl(state: ProvisioningState, args: argparse.Namespace) -> dict[str, str]:
    """Copy the fleet CRL to ``--crl-dest`` and reload the broker; what was done.

    ``RuntimeError`` when the reload command fails.
    """
    crl = state.ca_dir / "crl.pem"
    steps = {"crl": str(crl)}
    if args.crl_dest:
        shutil.copyfile(crl, args.crl_dest)
        os.chmod(args.crl_dest, 0o644)
        steps["crl_copied_to"] = args.crl_dest
    if args.broker_pid:
        os.kill(args.broker_pid, signal.SIGHUP)
        steps["broker"] = f"SIGHUP sent to {args.broker_pid}"
    elif args.reload:
        res = subprocess.run(args.reload, shell=True, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"the broker reload failed: {res.stderr.strip() or res.returncode}")
        steps["broker"] = f"reloaded ({args.reload})"
    return steps


def cmd_revoke(args: argparse.Namespace) -> None:
    """Revoke a node: CRL re-signed, broker reloaded, head office rejects its events."""
    state = ProvisioningState(Path(args.state))
    record = state.revoke(args.node)
    try:
        steps = _publish_crl(state, args)
    except RuntimeError as err:
        _fail(f"revoked {args.node}, but {err}")
    store = _ledger_store(args)
    if store is not None:
        from staypoint.central.ledger import Ledger
        from staypoint.loyalty.events import parse_iso

        # The fleet hears of it as a change, so every node refuses the node's later vouchers.
        try:
            (change,) = Ledger(store).revoke_node(record.node, parse_iso(str(record.revoked_at)))
        finally:
            store.close()
        steps["fleet"] = f"revocation sent to the nodes (change {change.version})"
    _emit(
        args,
        {"node": record.node, "serial": record.serial, "revoked_at": record.revoked_at, **steps},
        f"revoked {record.node} (serial {record.serial}) at {record.revoked_at}; "
        + "; ".join(f"{k}: {v}" for k, v in steps.items()),
    )


def _reload_broker(args: argparse.Namespace) -> str | None:
    """SIGHUP ``--broker-pid`` or run ``--reload``; what was done (None: nothing asked)."""
    if args.broker_pid:
        os.kill(args.broker_pid, signal.SIGHUP)
        return f"SIGHUP sent to {args.broker_pid}"
    if args.reload:
        res = subprocess.run(args.reload, shell=True, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"the broker reload failed: {res.stderr.strip() or res.returncode}")
        return f"reloaded ({args.reload})"
    return None


def cmd_crl_renew(args: argparse.Namespace) -> None:
    """Re-sign both CRLs well before their nextUpdate, copy them where the broker reads them."""
    from staypoint.provisioning.pki import CRL_FILE

    state = ProvisioningState(Path(args.state))
    now = dt.datetime.now(dt.UTC)
    rows, copied = [], False
    for label, ca, dest in (
        ("fleet", state.ca(), args.crl_dest),
        ("office", state.office_ca(), args.office_crl_dest),
    ):
        renewed = ca.renew_crl(now=now, before_days=args.before_days, force=args.force)
        row: dict[str, Any] = {"crl": label, "renewed": renewed, "next_update": None, "copied_to": None}
        nxt = ca.crl_next_update()
        row["next_update"] = nxt.isoformat(timespec="seconds") if nxt else None
        source = ca.directory / CRL_FILE
        if dest and (not Path(dest).exists() or Path(dest).read_bytes() != source.read_bytes()):
            # Written in place (the broker's folder is not ours to make files in); a path unit
            # (staypoint-crl-reload.path) or --reload / --broker-pid reloads the broker.
            shutil.copyfile(source, dest)
            os.chmod(dest, 0o644)
            row["copied_to"] = dest
            copied = True
        rows.append(row)
    broker = None
    if copied:
        try:
            broker = _reload_broker(args)
        except RuntimeError as err:
            _fail(f"CRLs copied, but {err}")
    text = "\n".join(
        f"{r['crl']:6} CRL {'renewed' if r['renewed'] else 'kept'}, next update {r['next_update']}"
        + (f"; copied to {r['copied_to']}" if r["copied_to"] else "")
        for r in rows
    )
    if broker:
        text += f"\nbroker: {broker}"
    _emit(args, {"crls": rows, "broker": broker}, text)


def cmd_nodes(args: argparse.Namespace) -> None:
    """Nodes enrolled through this provisioning folder."""
    nodes = [rec.to_json() for rec in ProvisioningState(Path(args.state)).nodes().values()]
    text = "\n".join(
        f"{n['node']:24} {n['property']:10} " + (f"REVOKED {n['revoked_at']}" if n["revoked_at"] else "ok")
        for n in nodes
    )
    _emit(args, nodes, text or "no nodes enrolled")


# -- on the board ------------------------------------------------------------------------------------


def cmd_enrol(args: argparse.Namespace) -> None:
    """Enrol this board (keys made here; re-run after any failure to finish)."""
    tls = None
    if args.enrol_tls:
        d = Path(args.enrol_tls)
        tls = TLSFiles(ca=d / "ca.crt", cert=d / "enrol.crt", key=d / "enrol.key")
    say = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    from staypoint.provisioning.hardware_spec import PRINTER_FORMS, parse_pinpad, parse_printer, parse_reader

    # Parsed before anything is made: a mistyped device is one line and nothing written.
    if args.printer is None:
        raise ValueError(f"--printer is required: the board's receipt printer, {PRINTER_FORMS}")
    hardware = {**parse_reader(args.reader), **parse_pinpad(args.pinpad), **parse_printer(args.printer)}
    result = enrol(
        args.broker,
        args.token,
        Path(args.root),
        enrol_tls=tls,
        node=args.node,
        hardware=hardware,
        backup_url=args.backup,
        hotel_name=args.hotel_name,
        timezone=args.timezone,
        timeout=args.timeout,
        say=say,
        warn=lambda line: print(line, file=sys.stderr, flush=True),
    )
    next_steps = (
        "next: systemd-sysusers && systemctl daemon-reload && "
        "systemctl enable --now staypoint-sync staypoint-litestream staypoint-kiosk; "
        "then `staypoint provision selftest`"
    )
    verb = "already enrolled" if result.already else "enrolled"
    _emit(args, result.to_json(), f"{result.node} {verb}: {result.layout.node_toml}\n{next_steps}")


def cmd_selftest(args: argparse.Namespace) -> None:
    """Exercise reader, PIN pad and printer from node.toml; exit 1 when any check fails."""
    hardware = load_hardware(Path(args.config))
    prod = is_production(Path(args.config))
    results = run_selftest(hardware, interactive=args.interactive, timeout=args.timeout, production=prod)
    _emit(args, [r.to_json() for r in results], format_table(results))
    if not all(r.ok for r in results):
        raise SystemExit(1)


# -- wiring -------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add ``provision`` and its subcommands to the top-level subparsers ``sub``."""
    prov = sub.add_parser("provision", help="fleet CA, enrolment tokens, enrol a board, revoke, self-test")
    psub = prov.add_subparsers(dest="provision_cmd", required=True)

    def add(parent: Any, name: str, fn: Callable[[argparse.Namespace], None], help_: str) -> Any:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=_guard(fn))
        return p

    def state(p: Any) -> None:
        p.add_argument(
            "--state", default=DEFAULT_STATE, help=f"head office's provisioning folder ({DEFAULT_STATE})"
        )

    ca = psub.add_parser("ca", help="the fleet CA").add_subparsers(dest="ca_cmd", required=True)
    p = add(
        ca,
        "init",
        cmd_ca_init,
        "create the fleet and head-office CAs, the broker, head-office and enrol certificates",
    )
    state(p)
    p.add_argument("--broker-host", action="append", default=[], help="broker DNS name for its certificate")
    p.add_argument("--broker-ip", action="append", default=[], help="broker IP address for its certificate")
    p.add_argument("--json", action="store_true")

    tok = psub.add_parser("token", help="one-time enrolment tokens").add_subparsers(
        dest="token_cmd", required=True
    )
    p = add(tok, "create", cmd_token_create, "issue a one-time token bound to a node id")
    state(p)
    p.add_argument("--node", required=True, help="the node id, e.g. sha-lobby-01")
    p.add_argument("--property", required=True, help="the property code, e.g. SHA")
    p.add_argument("--ttl", default="2h", help="how long it stays valid: 30m, 2h, 1d (max 7d)")
    p.add_argument("--json", action="store_true")
    p = add(tok, "list", cmd_token_list, "tokens issued and their state")
    state(p)
    p.add_argument("--json", action="store_true")

    def crl_publishing(p: Any) -> None:
        p.add_argument("--crl-dest", help="copy the new CRL here (the broker's crlfile)")
        p.add_argument("--broker-pid", type=int, help="send SIGHUP to this broker process")
        p.add_argument(
            "--reload",
            default="systemctl reload mosquitto",
            help="command that reloads the broker ('' for none)",
        )

    p = add(psub, "serve", cmd_serve, "answer enrolment requests (head office)")
    state(p)
    p.add_argument(
        "--broker", default=f"127.0.0.1:{OFFICE_PORT}", help="HOST:PORT of the broker's head-office listener"
    )
    # The ledger (--store URL or --db PATH): node keys registered there, its programme handed out.
    add_store_option(p, required=False)
    p.add_argument("--ledger", dest="db", help=argparse.SUPPRESS)  # the older name of --db
    p.add_argument("--program", help="programme document to hand out (without a ledger)")
    p.add_argument(
        "--backup-url",
        default="file:///var/backups/staypoint/{node}",
        help="Litestream replica URL for a node ({node} is replaced)",
    )
    # A node enrolled again has its previous certificate revoked: the CRL goes out as
    # with `provision revoke`.
    crl_publishing(p)

    p = add(psub, "enrol", cmd_enrol, "enrol this board with head office (run on the board)")
    p.add_argument("--broker", required=True, help="HOST:PORT of the fleet broker")
    p.add_argument("--token", required=True, help="the one-time token from head office")
    p.add_argument("--root", default="/", help="install under this folder (default /)")
    p.add_argument("--node", help="expected node id (refused when the token is for another)")
    p.add_argument(
        "--enrol-tls", help="folder with ca.crt, enrol.crt, enrol.key (default ROOT/etc/staypoint/enrol)"
    )
    p.add_argument(
        "--printer",
        metavar="SPEC",
        help="receipt printer (required): usb:VID:PID | serial:/dev/ttyX[:baud] | network:host[:port] | "
        "sim (demo only)",
    )
    p.add_argument(
        "--reader",
        default="pcsc",
        metavar="SPEC",
        help="card reader: pcsc[:name] | evdev:/dev/input/... | sim (default pcsc)",
    )
    p.add_argument(
        "--pinpad",
        default="none",
        metavar="SPEC",
        help="PIN pad: serial:/dev/ttyX[:baud] | none (on-screen keypad, the default) | sim",
    )
    p.add_argument(
        "--hotel-name", help="the hotel's name as guests see it (default: head office's, if it sends one)"
    )
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        help="the property's IANA time zone, e.g. Asia/Shanghai, for slips and staff screens "
        "(default: head office's property record, else the one in node.toml, else UTC with a warning)",
    )
    p.add_argument(
        "--backup",
        metavar="URL",
        help="Litestream replica: file:///var/backups/staypoint/NODE, s3://bucket/path, sftp://... "
        "(default: what head office says)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for head office")
    p.add_argument("--json", action="store_true")

    p = add(psub, "revoke", cmd_revoke, "revoke a node's certificate and reject its events")
    state(p)
    p.add_argument("--node", required=True)
    # The ledger (--store URL or --db PATH): every node told, and then refuses its later vouchers.
    add_store_option(p, required=False)
    p.add_argument("--ledger", dest="db", help=argparse.SUPPRESS)  # the older name of --db
    crl_publishing(p)
    p.add_argument("--json", action="store_true")

    crl = psub.add_parser("crl", help="the CRLs the broker checks").add_subparsers(
        dest="crl_cmd", required=True
    )
    p = add(crl, "renew", cmd_crl_renew, "re-sign the fleet and head-office CRLs before they expire")
    state(p)
    p.add_argument(
        "--before-days",
        type=float,
        default=CRL_RENEW_BEFORE_DAYS,
        help=f"re-sign a CRL with fewer days than this left ({CRL_RENEW_BEFORE_DAYS:g}; they last 365)",
    )
    p.add_argument("--force", action="store_true", help="re-sign now, whatever is left")
    p.add_argument("--office-crl-dest", help="copy the head-office CRL here (the office listener's crlfile)")
    crl_publishing(p)
    p.add_argument("--json", action="store_true")

    p = add(psub, "nodes", cmd_nodes, "nodes enrolled (and revoked) through this folder")
    state(p)
    p.add_argument("--json", action="store_true")

    p = add(psub, "selftest", cmd_selftest, "test card reader, PIN pad and printer (prints a test page)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"node config ({DEFAULT_CONFIG})")
    p.add_argument("--interactive", action="store_true", help="also ask for a card tap and a PIN entry")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for a tap or PIN")
    p.add_argument("--json", action="store_true")


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m staypoint.provisioning.cli provision ...``."""
    return run_group(register, argv)


if __name__ == "__main__":
    sys.exit(main())
