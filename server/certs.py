"""Development credentials for a local federation: a CA, the SuperLink's TLS certificate,
and one authentication key pair per SuperNode (``fedrec certs``).

What Flower 1.23 expects (read from its CLIs):

* SuperLink TLS: ``--ssl-ca-certfile ca.crt --ssl-certfile server.pem --ssl-keyfile
  server.key`` (PEM); SuperNodes and ``flwr`` verify it with ``--root-certificates ca.crt``
  (``root-certificates`` in the federation's pyproject section).
* SuperNode authentication (``flower-superlink --enable-supernode-auth``): each node has
  an EC key pair on a NIST curve in OpenSSH format: ``flower-supernode
  --auth-supernode-private-key node-1`` and ``flwr supernode register node-1.pub``.

These are for development and tests on one machine: the CA key sits next to the
certificates. A production operator keeps the CA offline and gives each device only its
own key.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedrec.shared.errors import FedrecError


@dataclass(frozen=True)
class Credentials:
    """Paths of what :func:`make_credentials` wrote."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    node_keys: list[Path]      # private keys (OpenSSH); the public key is ``<key>.pub``


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write atomically; private keys readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedrec development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_credentials(out: str | Path, nodes: int, hosts: list[str] | None = None,
                     days: int = 365, force: bool = False) -> Credentials:
    """Write ``ca.crt``, ``server.pem``/``server.key`` and ``node-<i>``/``node-<i>.pub``.

    Args:
        out: folder (created).
        nodes: number of SuperNode key pairs, >= 0.
        hosts: names and IP addresses the SuperLink is reached at (subject alternative
            names); default ``localhost`` and ``127.0.0.1``.
        days: validity of the certificates.
        force: overwrite existing credentials (otherwise refuse).
    """
    out = Path(out)
    if nodes < 0 or days < 1:
        raise FedrecError("certs: --nodes must be >= 0 and --days >= 1")
    if (out / "ca.crt").exists() and not force:
        raise FedrecError(f"{out} already holds credentials; use --force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(_name("fedrec development CA"))
          .issuer_name(_name("fedrec development CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names = []
    for host in hosts or ["localhost", "127.0.0.1"]:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server = (x509.CertificateBuilder().subject_name(_name("fedrec SuperLink"))
              .issuer_name(ca.subject).public_key(server_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(valid[0]).not_valid_after(valid[1])
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))

    _write(out / "ca.key", _pem_key(ca_key), private=True)
    _write(out / "ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    _write(out / "server.key", _pem_key(server_key), private=True)
    _write(out / "server.pem", server.public_bytes(serialization.Encoding.PEM))
    keys = []
    for i in range(1, nodes + 1):
        key = ec.generate_private_key(ec.SECP384R1())
        path = out / f"node-{i}"
        _write(path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()), private=True)
        _write(out / f"node-{i}.pub", key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
        keys.append(path)
    return Credentials(out / "ca.crt", out / "server.pem", out / "server.key", keys)
