"""Where the service may listen and how: TLS files checked before uvicorn starts, plain HTTP off the
loopback interface only when the operator says ``--insecure``.

Bearer tokens and session cookies cross the network with every request; on a plant network without
TLS anyone on the segment can read them. So binding a non-loopback address needs a certificate and
key, or an explicit, logged decision to run without.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from inspectloop.errors import ServiceError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


@dataclass(frozen=True)
class Listen:
    """A checked listening plan: address, port, TLS files (both or neither) and the warning to give, if any."""

    host: str
    port: int
    cert: Path | None = None
    key: Path | None = None
    warning: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0-like wildcard: reachable from the network


def plan_listen(host: str, port: int, *, cert: Path | None = None, key: Path | None = None,
                insecure: bool = False) -> Listen:
    """Check how the service is to listen; ServiceError for half or unusable TLS settings, or plain HTTP
    on a network address without ``insecure`` (then the returned plan carries a warning)."""
    if (cert is None) != (key is None):
        raise ServiceError("TLS needs both a certificate and its private key",
                           "give --tls-cert CERT.pem and --tls-key KEY.pem together")
    if cert is not None and key is not None:
        check_tls_files(cert, key)
        return Listen(host, port, cert, key)
    if is_loopback(host):
        return Listen(host, port)
    if not insecure:
        raise ServiceError(f"refusing to serve plain HTTP on {host}: tokens and session cookies would cross the "
                           "network readable by anyone on it",
                           "give --tls-cert CERT.pem --tls-key KEY.pem, or --insecure if the network is isolated")
    return Listen(host, port, warning=f"INSECURE: serving plain HTTP on {host}:{port} (--insecure); tokens and "
                                      "session cookies cross the network unencrypted. Use --tls-cert/--tls-key.")


def check_tls_files(cert: Path, key: Path) -> None:
    """ServiceError unless ``cert`` and ``key`` are readable PEM files that belong together."""
    for path, what in ((cert, "certificate"), (key, "private key")):
        if not path.is_file():
            raise ServiceError(f"TLS {what} {path} does not exist", "give the path of a PEM file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ServiceError(f"cannot use TLS certificate {cert} with key {key}: {exc}",
                           "give a PEM certificate and the unencrypted PEM private key that belongs to it") from None
