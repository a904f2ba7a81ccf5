"""A certificate authority that lives for one run: the proxy's MITM certificates chain to it.

The key files are written 0600 into a private temp dir (0700) that ``close()`` deletes; the child
trusts ``bundle`` = this CA + the system roots, so non-AWS HTTPS it makes still verifies.
"""

from __future__ import annotations

import datetime
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _system_roots() -> str:
    try:
        import certifi

        return Path(certifi.where()).read_text(encoding="utf-8")
    except (ImportError, OSError):
        cafile = ssl.get_default_verify_paths().cafile
        return Path(cafile).read_text(encoding="utf-8") if cafile and Path(cafile).exists() else ""


class RunCA:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rolesmith-ca-"))
        now = datetime.datetime.now(datetime.timezone.utc)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rolesmith record per-run CA")])
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self.cert = self.dir / "ca.pem"
        self.cert.write_bytes(pem)
        self.key = self.dir / "ca-key.pem"
        _write_private(self.key, self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        self.leaf_key = self.dir / "leaf-key.pem"
        _write_private(self.leaf_key, self._leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.bundle = self.dir / "bundle.pem"
        self.bundle.write_text(pem.decode() + "\n" + _system_roots(), encoding="utf-8")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def context_for(self, host: str) -> ssl.SSLContext:
        """Server-side TLS context presenting a certificate for ``host`` signed by this CA."""
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                now = datetime.datetime.now(datetime.timezone.utc)
                leaf = (
                    x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
                    .issuer_name(self._cert.subject).public_key(self._leaf_key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                    .sign(self._key, hashes.SHA256())
                )
                path = self.dir / f"leaf-{len(self._contexts)}.pem"
                path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(path, self.leaf_key)
                self._contexts[host] = ctx
            return ctx

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
