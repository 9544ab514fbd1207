"""``testbed keys``: create and list the node keys of a lab (docs/security.md).

``testbed keys create DIR NAME...`` writes a CURVE + Ed25519 key pair per node
(``NAME.key`` public, ``NAME.key_secret`` mode 0600); ``testbed keys list DIR`` shows the
enrolled nodes. A multi-host lab creates the directory once, copies every ``*.key`` file to
every host and each ``NAME.key_secret`` only to the host that runs node ``NAME``, and points
the scenario's ``endpoints.keys`` at it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

from testbed.errors import UserError

__all__ = ["register"]


def _create(args: argparse.Namespace) -> int:
    from flowgraphs.keys import KeysError, create_keys

    try:
        paths = create_keys(args.dir, args.names, overwrite=args.force)
    except KeysError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"{args.dir}: cannot write keys: {e.strerror}") from None
    for p in paths:
        sys.stdout.write(f"{p}\n")
    return 0


def _list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flowgraphs.keys import SECRET_SUFFIX, KeysError, list_keys

    try:
        nodes = list_keys(args.dir)
    except KeysError as e:
        raise UserError(str(e)) from None
    rows = []
    for k in nodes:
        sec = Path(args.dir) / f"{k.name}{SECRET_SUFFIX}"
        rows.append(
            {
                "name": k.name,
                "curve_public": k.curve_public.decode(),
                "sign_fingerprint": hashlib.sha256(k.sign_public).hexdigest()[:16],
                "secret_here": sec.is_file(),
                "secret_mode": oct(sec.stat().st_mode & 0o777) if sec.is_file() else None,
            }
        )
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return 0
    sys.stdout.write(f"{'node':<20} {'CURVE public key':<42} {'Ed25519 fp':<17} secret\n")
    for r in rows:
        sec = f"here ({r['secret_mode']})" if r["secret_here"] else "not here"
        sys.stdout.write(
            f"{r['name']:<20} {r['curve_public']:<42} {r['sign_fingerprint']:<17} {sec}\n"
        )
    return 0


def register(sub: Any) -> None:
    """Add ``keys create`` and ``keys list``."""
    k = sub.add_parser("keys", help="create and list node keys (CURVE + Ed25519)")
    ks = k.add_subparsers(dest="keys_cmd", required=True, metavar="{create,list}")
    c = ks.add_parser("create", help="create a key pair per node name")
    c.add_argument("dir", help="keys directory (created 0700)")
    c.add_argument("names", nargs="+", help="node names: channel, satellite, cluster ids")
    c.add_argument("--force", action="store_true", help="replace existing key pairs")
    c.set_defaults(func=_create)
    ls = ks.add_parser("list", help="the enrolled nodes of a keys directory")
    ls.add_argument("dir")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
