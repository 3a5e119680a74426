"""``staypoint central api``: serve the HTTP API with uvicorn; ``--openapi`` writes its document.

Wiring (``staypoint/cli/main.py`` owns the top level): pass the ``central`` subparsers —
the object ``staypoint.central.cli.register`` creates — to :func:`register`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from staypoint.entry import run_group


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document (built over throw-away stores: it depends on no data)."""
    from staypoint.central.api.app import make_api
    from staypoint.central.application.state import SideStore
    from staypoint.central.ledger import Ledger
    from staypoint.central.profiles import ProfileStore
    from staypoint.central.store_sqlite import SqliteLedgerStore

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ledger = Ledger(SqliteLedgerStore(d / "l.db"))
        side = SideStore(f"sqlite://{d / 's.db'}")
        profiles = ProfileStore(d / "p.db")
        try:
            return make_api(ledger, profiles, side, token_key=b"0" * 32).openapi()
        finally:
            side.close()
            profiles.close()
            ledger.store.close()


def _key_file(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, Ed25519PrivateKey)
        return key
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(path, 0o600)
    return key


def cmd_api(args: argparse.Namespace) -> None:
    if args.openapi:
        text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
        if args.openapi == "-":
            sys.stdout.write(text)
        else:
            Path(args.openapi).write_text(text)
        return
    import uvicorn

    from staypoint.central.api.app import make_api
    from staypoint.central.application.state import SideStore
    from staypoint.central.cli import open_store
    from staypoint.central.console.cli import store_locations
    from staypoint.central.ledger import Ledger
    from staypoint.central.profiles import open_profiles
    from staypoint.central.store import StoreConfigError

    if not args.store or not args.secrets:
        sys.exit("error: --store and --secrets are required to serve")
    # --side and --profiles default to the ledger's database on PostgreSQL.
    store_url, side_url, profiles = store_locations(args)
    secrets_dir = Path(args.secrets)
    secrets_dir.mkdir(parents=True, exist_ok=True)
    token_file = secrets_dir / "token.key"
    if not token_file.exists():
        token_file.write_bytes(os.urandom(32))
        os.chmod(token_file, 0o600)
    ledger = Ledger(open_store(store_url))
    try:
        profile_store = open_profiles(profiles)
    except StoreConfigError as exc:
        ledger.store.close()
        sys.exit(f"staypoint: {exc}")
    app = make_api(
        ledger,
        profile_store,
        SideStore(side_url),
        token_key=token_file.read_bytes(),
        voucher_key=_key_file(secrets_dir / "web-voucher.pem"),
        suffix=args.stream_suffix,
    )
    if args.create_key:
        name, scopes, props = args.create_key
        key = app.state.services.create_key(name, scopes.split(","), props.split(","), datetime.now(UTC))
        print(key)
        return
    from staypoint.gc_tuning import tune_for_throughput

    tune_for_throughput()  # the app and its stores are built: frozen out of collections
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", workers=1)


def register(central_sub: Any) -> None:
    """Add ``api`` under ``staypoint central``."""
    p = central_sub.add_parser("api", help="serve the HTTP API (booking engine, website, property systems)")
    p.add_argument("--store", help="ledger: sqlite:///path/ledger.db or postgresql://user@/db?host=/run/pg")
    p.add_argument(
        "--side",
        help="head office's side tables: sqlite:///path/side.db or the PostgreSQL URL (default on "
        "PostgreSQL: the ledger's database)",
    )
    p.add_argument(
        "--profiles",
        help="members' personal data: a SQLite file, sqlite:///path or postgresql://... "
        "(default with a PostgreSQL ledger: its own database)",
    )
    p.add_argument("--secrets", help="folder for the token-signing key and the web voucher key")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--stream-suffix", default="", help="this process's event streams (web-<suffix>), if several"
    )
    p.add_argument(
        "--create-key",
        nargs=3,
        metavar=("NAME", "SCOPES", "PROPERTIES"),
        help="print a new API key (scopes and properties comma-separated, * = all) and exit",
    )
    p.add_argument(
        "--openapi", metavar="FILE", help="write the OpenAPI document to FILE (- for stdout) and exit"
    )
    p.set_defaults(fn=cmd_api)
    register_keys(p)


def _side_store(args: argparse.Namespace, *, create: bool = False) -> Any:
    """The side tables from --side (or the PostgreSQL --store), as 'central api' opens them.

    A command that reads them refuses a missing SQLite file; a service (``create``) makes it,
    as the API does, since the units start together and none may wait on another's first run."""
    from staypoint.central.application.state import SideStore
    from staypoint.central.store import StoreConfigError, parse_store_url

    try:
        store = parse_store_url(args.store) if getattr(args, "store", None) else None
        side = parse_store_url(args.side) if getattr(args, "side", None) else None
        side = side or (store if store is not None and store.is_pg else None)
        if side is None:
            raise StoreConfigError("--side is needed (sqlite:///path/side.db, or --store postgresql://...)")
        if not create and not side.is_pg and not Path(side.canonical().removeprefix("sqlite://")).exists():
            raise StoreConfigError(f"no side tables at {side.canonical()}")
    except StoreConfigError as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    return SideStore(side.canonical())


def cmd_keys(args: argparse.Namespace) -> None:
    from staypoint.central.application import keys

    side = _side_store(args)
    now = datetime.now(UTC)
    try:
        if args.keys_cmd == "create":
            print(keys.create_key(side, args.name, args.scopes.split(","), args.properties.split(","), now))
            print("(the key is shown once: give it to the client now)", file=sys.stderr)
        elif args.keys_cmd == "revoke":
            row = keys.revoke_key(side, args.id, now)
            print(f"revoked {row.id} ({row.name}) at {row.revoked}")
        else:
            rows = keys.list_keys(side)
            if args.json:
                print(json.dumps([r.as_dict() for r in rows], indent=2))
            for r in [] if args.json else rows:
                state = f"revoked {r.revoked}" if r.revoked else "active"
                print(f"{r.id}  {r.name:<24} {','.join(r.scopes):<28} {','.join(r.properties):<12} {state}")
    except keys.KeyRefused as exc:
        raise SystemExit(f"staypoint: {exc}") from None
    finally:
        side.close()


def register_keys(api_parser: Any) -> None:
    """``staypoint central api keys create|list|revoke``: the API's clients' keys."""
    sub = api_parser.add_subparsers(dest="api_cmd", metavar="keys")
    k = sub.add_parser("keys", help="create, list and revoke the API's client keys")
    ksub = k.add_subparsers(dest="keys_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after 'api' instead, the value there stands.
    common.add_argument(
        "--store", default=argparse.SUPPRESS, help="the ledger (its PostgreSQL holds the keys)"
    )
    common.add_argument(
        "--side", default=argparse.SUPPRESS, help="head office's side tables (SQLite or PostgreSQL)"
    )
    c = ksub.add_parser("create", parents=[common], help="print a new key once (kept only as a hash)")
    c.add_argument("name", help="who the key is for, e.g. 'SHA PMS' or 'booking engine'")
    c.add_argument("scopes", help="comma-separated: member,enrol,stays,rates,claims,reports")
    c.add_argument("properties", help="comma-separated property codes, * = all")
    ls = ksub.add_parser("list", parents=[common], help="every key: id, name, scopes, properties, state")
    ls.add_argument("--json", action="store_true")
    r = ksub.add_parser("revoke", parents=[common], help="revoke a key at once (401 from then on)")
    r.add_argument("id", help="the key's id (the part after sp_), or the whole key")
    for parser in (c, ls, r):
        parser.set_defaults(fn=cmd_keys)


def main(argv: list[str] | None = None) -> int:
    return run_group(register, argv, prog="staypoint central", dest="central_cmd")


if __name__ == "__main__":
    sys.exit(main())
