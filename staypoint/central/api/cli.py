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
    from staypoint.central.api.state import SideStore
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
    from staypoint.central.api.state import SideStore
    from staypoint.central.cli import open_store
    from staypoint.central.console.cli import store_locations
    from staypoint.central.ledger import Ledger
    from staypoint.central.profiles import ProfileStore

    if not args.store or not args.profiles or not args.secrets:
        sys.exit("error: --store, --profiles and --secrets are required to serve")
    # --side defaults to the ledger's database on PostgreSQL.
    store_url, side_url, profiles = store_locations(args)
    secrets_dir = Path(args.secrets)
    secrets_dir.mkdir(parents=True, exist_ok=True)
    token_file = secrets_dir / "token.key"
    if not token_file.exists():
        token_file.write_bytes(os.urandom(32))
        os.chmod(token_file, 0o600)
    ledger = Ledger(open_store(store_url))
    app = make_api(
        ledger,
        ProfileStore(Path(profiles)),
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
    p.add_argument("--profiles", help="members' personal data (SQLite file)")
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


def main(argv: list[str] | None = None) -> int:
    return run_group(register, argv, prog="staypoint central", dest="central_cmd")


if __name__ == "__main__":
    sys.exit(main())
