"""Where the service may listen: loopback freely, the network only with TLS or an explicit --insecure."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspectloop.errors import ServiceError
from inspectloop.web.tls import is_loopback, plan_listen
from tests.tls_helpers import self_signed


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("10.1.2.3", False), ("line7.plant", False)])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plans(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert plan_listen("127.0.0.1", 8000).scheme == "http" and plan_listen("127.0.0.1", 8000).warning is None
    tls = plan_listen("0.0.0.0", 8443, cert=cert, key=key)
    assert (tls.scheme, tls.cert, tls.key, tls.warning) == ("https", cert, key, None)
    insecure = plan_listen("0.0.0.0", 8000, insecure=True)
    assert insecure.scheme == "http" and insecure.warning and "INSECURE" in insecure.warning
    with pytest.raises(ServiceError, match="refusing to serve plain HTTP on 10.1.2.3") as refused:
        plan_listen("10.1.2.3", 8000)
    assert "--tls-cert" in str(refused.value.hint) and "--insecure" in str(refused.value.hint)
    with pytest.raises(ServiceError, match="cannot use TLS certificate"):
        plan_listen("0.0.0.0", 8443, cert=key, key=cert)
