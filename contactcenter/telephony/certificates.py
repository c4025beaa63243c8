"""A self-signed certificate for the loopback registrar's TLS, made once and kept in ``<data_dir>/tls/``.

So ``[sip] transport = "tls"`` works out of the box with no PBX: Kamailio serves this certificate and the desk
trusts exactly it (it is its own CA), so verification stays on. Softphones on the same machine can be pointed
at the same file. A company PBX has a real certificate; this one is for loopback only (its names are
``localhost``, ``127.0.0.1`` and ``::1``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_NAME = "registrar-cert.pem"
KEY_NAME = "registrar-key.pem"
VALID_DAYS = 825  # the longest lifetime common TLS clients accept for a server certificate
RENEW_DAYS = 30  # a certificate this close to its end is replaced by a new one


@dataclass(frozen=True)
class CertificatePair:
    """Where the certificate (PEM, also the CA file to trust) and its private key are."""

    certificate: Path
    key: Path


def _still_good(path: Path) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    left = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left > datetime.timedelta(days=RENEW_DAYS)


def loopback_certificate(folder: Path) -> CertificatePair:
    """The registrar's certificate and key in ``folder``, made (EC P-256, SHA-256) when absent or near expiry.
    The key file is readable by its owner only."""
    pair = CertificatePair(folder / CERT_NAME, folder / KEY_NAME)
    if pair.key.is_file() and _still_good(pair.certificate):
        return pair
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contactcenter loopback registrar")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        # its own CA (the file the desk trusts), with the extensions strict verification (Python 3.13) asks for
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_bytes)
    pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return pair
