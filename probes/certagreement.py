"""Cert material compared across services (do all hold the same CA, cert and key?) and with what a server
serves (is it the certificate in Secrets Manager?). By SHA-256 only: no value is ever shown."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from probes.certresults import bug, day, guarded, not_checked, result, scrubbed, secret_fragments
from probes.certs import CERT_VAR, VARS
from probes.model import CheckResult, Verdict
from probes.pem import info_of, load_certs, sha256_hex

__all__ = ["check_agreement", "check_served_matches"]


def _value_digest(value: str) -> str:
    """Digest of what init.sh would write: the decoded bytes when the value is base64, else the value."""
    compact = "".join(value.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        data = value.strip().encode("utf-8", "replace")
    return sha256_hex(data)


def _agreement(
    per_service: Mapping[str, tuple[str | None, str | None, str | None]],
    target: str,
    needs: Mapping[str, Sequence[str]] | None = None,
) -> CheckResult:
    if not per_service:
        return not_checked("certs.agreement", target, "no services given")
    services = sorted(per_service)
    lacking: dict[str, list[str]] = {}  # service -> vars it lacks
    differ: dict[str, list[str]] = {}  # var -> services outside the majority
    ev_vars: dict[str, Any] = {}
    for idx, var in enumerate(VARS):
        groups: dict[str, list[str]] = {}
        for svc in services:
            val = per_service[svc][idx]
            if needs is not None and var not in needs.get(svc, VARS):
                continue  # not this service's material: neither compared nor required
            if not (val and val.strip()):
                lacking.setdefault(svc, []).append(var)
                continue
            groups.setdefault(_value_digest(val), []).append(svc)
        ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
        ev_vars[var] = {
            "groups": ordered,
            "missing": [s for s in services if var in lacking.get(s, [])],
        }
        if len(ordered) > 1:
            differ[var] = [s for g in ordered[1:] for s in g]
    ev: dict[str, Any] = {"services": services, "values": ev_vars}
    if not lacking and not differ:
        if len(services) == 1:
            return result("certs.agreement", target, Verdict.OK, f"only {services[0]} holds cert material", ev)
        return result(
            "certs.agreement",
            target,
            Verdict.OK,
            f"all {len(services)} services hold the same CA, cert and key"
            if needs is None
            else f"all {len(services)} services hold the same material (each what it needs)",
            ev,
        )
    parts: list[str] = []
    for var, svcs in differ.items():
        majority = ev_vars[var]["groups"][0]
        verb = "holds" if len(svcs) == 1 else "hold"
        parts.append(f"{', '.join(svcs)} {verb} a different {var} than {', '.join(majority)}")
    for svc in sorted(lacking):
        parts.append(f"{svc} lacks {', '.join(lacking[svc])}")
    ev["differ"] = differ
    ev["lacking"] = lacking
    return result(
        "certs.agreement",
        target,
        Verdict.FAIL,
        "services disagree on the cert material: " + "; ".join(parts) + " — push the material again "
        "(cockpit certs push) so every service holds the same values",
        ev,
    )


def check_agreement(
    per_service: Mapping[str, tuple[str | None, str | None, str | None]],
    *,
    target: str,
    needs: Mapping[str, Sequence[str]] | None = None,
) -> CheckResult:
    """Do all services hold the same (CA, cert, key) values? Compared by SHA-256, never shown.

    `per_service` maps a service name to its (INTERNAL_CA_CRT_B64, INTERNAL_TLS_CERT_B64,
    INTERNAL_TLS_KEY_B64) values, None where absent. Check id "certs.agreement".
    """
    values = [v for triple in per_service.values() for v in triple] if per_service else []
    res = guarded("certs.agreement", target, lambda: _agreement(per_service, target, needs))
    try:
        return scrubbed(res, secret_fragments(values, []))
    except Exception as e:
        return bug("certs.agreement", target, e)


def _served(served: bytes, expected_cert_pem: bytes, target: str) -> CheckResult:
    check = "certs.served"
    if not served:
        return not_checked(check, target, "the server presented no certificate")
    try:
        got = info_of(load_certs(served)[0])
    except ValueError as e:
        return result(check, target, Verdict.ERROR, f"could not read the served certificate: {e}")
    try:
        want = info_of(load_certs(expected_cert_pem)[0])
    except ValueError as e:
        return result(check, target, Verdict.ERROR, f"could not read the expected certificate ({CERT_VAR}): {e}")
    ev: dict[str, Any] = {"served": got.to_evidence(), "expected": want.to_evidence()}
    if got.fingerprint_sha256 == want.fingerprint_sha256:
        return result(
            check,
            target,
            Verdict.OK,
            f"serves the cert from Secrets Manager (sha256 {got.fingerprint_sha256[:16]}…)",
            ev,
        )
    return result(
        check,
        target,
        Verdict.FAIL,
        f"serves a different cert than Secrets Manager holds (served sha256 {got.fingerprint_sha256[:16]}…, "
        f"valid until {day(got.not_after)}; expected {want.fingerprint_sha256[:16]}…, valid until "
        f"{day(want.not_after)}) — restart did not pick up new material?",
        ev,
    )


def check_served_matches(served_cert_der_or_pem: bytes, expected_cert_pem: bytes, *, target: str) -> CheckResult:
    """Is the certificate the server serves the one in Secrets Manager? By SHA-256 fingerprint.

    `served_cert_der_or_pem` is what the TLS handshake gave (DER from
    ``SSLObject.getpeercert(binary_form=True)``, or PEM); `expected_cert_pem` the decoded
    INTERNAL_TLS_CERT_B64. Check id "certs.served". ERROR when either cannot be read.
    """
    return guarded("certs.served", target, lambda: _served(served_cert_der_or_pem, expected_cert_pem, target))
