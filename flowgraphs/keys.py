"""Node keys: ZeroMQ CURVE for every socket, Ed25519 for end-to-end payload signatures.

A *keys directory* holds one certificate pair per enrolled node::

    <name>.key          public: CURVE public key (Z85) and Ed25519 verify key (hex)
    <name>.key_secret   secret: the same plus both secret keys (file mode 0600)

The files use ZeroMQ's ZPL certificate layout (``metadata`` / ``curve`` sections), so
``zmq.auth.load_certificate`` reads their CURVE keys. A node loads the directory as a
:class:`Keyring`: every ``*.key`` file is an enrolled node (its public keys), and its own
``<name>.key_secret`` gives it its secrets. Enrolment is the presence of a public file:
a lab distributes the ``*.key`` files and keeps each ``*.key_secret`` on its node's host.

Transport (CURVE, RFC 26 / ZMTP 3): the binding side is the CURVE server; a
:class:`ZapGuard` in its process answers ZeroMQ's ZAP requests and admits, per socket
(ZAP domain), only the named enrolled nodes; the User-Id of every accepted message is the
node's name, so a peer's identity is its certificate, not a string it chooses. The client
side pins the server's public key (:func:`curve_client`).

Signatures (Ed25519, RFC 8032): :meth:`Keyring.sign` / :meth:`Keyring.verify` over bytes the
caller defines (``nodes.signing`` builds the manifest's). Ed25519 signatures are
deterministic: the same key and message give the same 64 bytes.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

__all__ = [
    "Keyring",
    "KeysError",
    "NodeKeys",
    "ZapGuard",
    "create_keys",
    "curve_client",
    "list_keys",
]

log = logging.getLogger("flowgraphs")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$", re.ASCII)
_LINE = re.compile(r'^\s*([a-z-]+)\s*=\s*"?([^"]*)"?\s*$')
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"


class KeysError(ValueError):
    """A keys directory or key file that cannot be used (one-line message)."""


@dataclass(frozen=True)
class NodeKeys:
    """One node's keys. Secrets are None in a public-only entry.

    curve_public, curve_secret : Z85 (40 ASCII bytes) CURVE keys
    sign_public, sign_secret : raw 32-byte Ed25519 keys
    """

    name: str
    curve_public: bytes
    sign_public: bytes
    curve_secret: bytes | None = None
    sign_secret: bytes | None = None


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise KeysError(f"node name must be 1..64 ASCII letters, digits, '-' or '_', got {name!r}")
    return name


def _write(path: Path, text: str, secret: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if secret else 0o644)
    try:
        if secret:
            os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _cert_text(k: NodeKeys, secret: bool) -> str:
    kind = "secret" if secret else "public"
    lines = [
        f"#   satfl-testbed node certificate ({kind}) for {k.name!r}",
        "#   ZeroMQ CURVE + Ed25519. " + ("Never share this file." if secret else "Share freely."),
        "metadata",
        f'    name = "{k.name}"',
        f'    sign-public-key = "{k.sign_public.hex()}"',
    ]
    if secret:
        assert k.sign_secret is not None
        lines.append(f'    sign-secret-key = "{k.sign_secret.hex()}"')
    lines += ["curve", f'    public-key = "{k.curve_public.decode()}"']
    if secret:
        assert k.curve_secret is not None
        lines.append(f'    secret-key = "{k.curve_secret.decode()}"')
    return "\n".join(lines) + "\n"


def _new_keys(name: str) -> NodeKeys:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub, sec = zmq.curve_keypair()
    sk = Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    return NodeKeys(
        name,
        pub,
        sk.public_key().public_bytes(raw, serialization.PublicFormat.Raw),
        sec,
        sk.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
    )


def create_keys(directory: str | Path, names: list[str], overwrite: bool = False) -> list[Path]:
    """Create a key pair per node name in ``directory`` (made 0700 if new); returns the
    public files. An existing pair is kept unless ``overwrite``."""
    d = Path(directory)
    for n in names:
        _check_name(n)
    if len(set(names)) != len(names):
        raise KeysError(f"duplicate node names in {names}")
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = []
    for n in names:
        pub, sec = d / f"{n}{PUBLIC_SUFFIX}", d / f"{n}{SECRET_SUFFIX}"
        if pub.exists() and sec.exists() and not overwrite:
            out.append(pub)
            continue
        k = _new_keys(n)
        _write(sec, _cert_text(k, True), secret=True)
        _write(pub, _cert_text(k, False), secret=False)
        out.append(pub)
    return out


def _parse(path: Path, secret: bool) -> NodeKeys:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise KeysError(f"{path}: cannot read the key file ({e})") from None
    vals: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            vals[m.group(1)] = m.group(2)
    try:
        name = _check_name(vals["name"])
        cpub = vals["public-key"].encode()
        spub = bytes.fromhex(vals["sign-public-key"])
        csec = vals["secret-key"].encode() if secret else None
        ssec = bytes.fromhex(vals["sign-secret-key"]) if secret else None
    except KeyError as e:
        raise KeysError(f"{path}: not a node certificate (no {e.args[0]!r})") from None
    except ValueError as e:
        raise KeysError(f"{path}: malformed key ({e})") from None
    if len(cpub) != 40 or len(spub) != 32 or (secret and (len(csec) != 40 or len(ssec) != 32)):  # type: ignore[arg-type]
        raise KeysError(f"{path}: a key has the wrong length")
    if path.name != f"{name}{SECRET_SUFFIX if secret else PUBLIC_SUFFIX}":
        raise KeysError(f"{path}: the file name does not match the node name {name!r}")
    return NodeKeys(name, cpub, spub, csec, ssec)


def list_keys(directory: str | Path) -> list[NodeKeys]:
    """The enrolled nodes of a keys directory (public entries, sorted by name)."""
    d = Path(directory)
    if not d.is_dir():
        raise KeysError(f"{d}: no such keys directory")
    return [_parse(p, False) for p in sorted(d.glob(f"*{PUBLIC_SUFFIX}"))]


class Keyring:
    """The enrolled nodes of a keys directory and, when ``me`` is given, this node's secrets.

    Raises :class:`KeysError` when the directory, a file or ``me``'s secret file is unusable,
    or when a secret file is readable by others (mode must be 0600 or stricter).
    """

    def __init__(self, directory: str | Path, me: str | None = None) -> None:
        self.dir = Path(directory)
        self.nodes: dict[str, NodeKeys] = {k.name: k for k in list_keys(self.dir)}
        if len({k.curve_public for k in self.nodes.values()}) != len(self.nodes):
            raise KeysError(f"{self.dir}: two nodes share a CURVE key")
        self._by_curve = {k.curve_public: k.name for k in self.nodes.values()}
        self.me: NodeKeys | None = None
        if me is not None:
            _check_name(me)
            sec = self.dir / f"{me}{SECRET_SUFFIX}"
            if not sec.is_file():
                raise KeysError(f"{sec}: no secret key for node {me!r}")
            mode = sec.stat().st_mode & 0o077
            if mode:
                raise KeysError(f"{sec}: readable by others (mode {oct(mode)}); chmod 600 it")
            k = _parse(sec, True)
            if me not in self.nodes or self.nodes[me].curve_public != k.curve_public:
                raise KeysError(f"{sec}: its public file {me}{PUBLIC_SUFFIX} is missing or differs")
            self.me = k

    def public(self, name: str) -> NodeKeys:
        """An enrolled node's public keys (KeysError when not enrolled)."""
        try:
            return self.nodes[name]
        except KeyError:
            raise KeysError(f"node {name!r} is not enrolled in {self.dir}") from None

    def name_of(self, curve_public_z85: bytes) -> str | None:
        """The enrolled node with this CURVE public key, or None."""
        return self._by_curve.get(curve_public_z85)

    def _mine(self) -> NodeKeys:
        if self.me is None:
            raise KeysError("this keyring was loaded without a node's secret keys")
        return self.me

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) of ``message`` with this node's key."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        sk = Ed25519PrivateKey.from_private_bytes(self._mine().sign_secret)  # type: ignore[arg-type]
        return sk.sign(message)

    def verify(self, signer: str, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is ``signer``'s (an enrolled node) over ``message``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        k = self.nodes.get(signer)
        if k is None or len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(k.sign_public).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def curve_server(self, sock: zmq.Socket, domain: str) -> None:
        """Make ``sock`` (before bind) a CURVE server with this node's key, its ZAP requests
        tagged with ``domain`` (a :class:`ZapGuard`'s allow list)."""
        me = self._mine()
        sock.curve_secretkey = me.curve_secret
        sock.curve_publickey = me.curve_public
        sock.zap_domain = domain.encode()
        sock.curve_server = True


def curve_client(sock: zmq.Socket, keys: Keyring, server: str) -> None:
    """Make ``sock`` (before connect) a CURVE client of the enrolled node ``server``."""
    me = keys._mine()
    sock.curve_secretkey = me.curve_secret
    sock.curve_publickey = me.curve_public
    sock.curve_serverkey = keys.public(server).curve_public


class _Authenticator(ThreadAuthenticator):
    """ZAP handler: per domain, the enrolled node names admitted; User-Id = node name."""

    def __init__(self, ctx: zmq.Context, keys: Keyring) -> None:
        super().__init__(ctx, log=logging.getLogger("flowgraphs.zap"))
        self.keys = keys
        self.allowed: dict[str, set[str]] = {}
        self.denied = 0
        self._lock = threading.Lock()

    def callback(self, domain: str, key: bytes) -> bool:
        name = self.keys.name_of(key)
        ok = name is not None and name in self.allowed.get(domain, set())
        if not ok:
            with self._lock:
                self.denied += 1
                n = self.denied
            if n <= 10 or n % 1000 == 0:
                log.warning(
                    "ZAP: refused %s on %r (#%d)",
                    f"node {name!r}" if name else "an unenrolled key",
                    domain,
                    n,
                )
        return ok

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.keys.name_of(z85.encode(client_public_key)) or ""


class ZapGuard:
    """One ZAP authenticator thread for a context: admits on each socket (its ZAP domain) only
    the enrolled nodes :meth:`serve` names. ``close`` stops the thread (then the context may
    be terminated)."""

    def __init__(self, ctx: zmq.Context, keys: Keyring) -> None:
        self.ctx = ctx
        self.keys = keys
        self._auth = _Authenticator(ctx, keys)
        self._auth.start()

    def serve(self, sock: zmq.Socket, domain: str, clients: list[str] | tuple[str, ...]) -> None:
        """Make ``sock`` a CURVE server that admits only ``clients`` (enrolled names)."""
        for c in clients:
            self.keys.public(c)
        self._auth.allowed[domain] = set(clients)
        self._auth.configure_curve_callback(domain, self._auth)
        self.keys.curve_server(sock, domain)

    @property
    def denied(self) -> int:
        """Connections refused so far (unknown key, or a node not allowed on that socket)."""
        return self._auth.denied

    def close(self) -> None:
        if self._auth.is_alive():
            self._auth.stop()
