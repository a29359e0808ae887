"""Pure checks of the TLS cert material (no I/O): the three INTERNAL_*_B64 values.

Every public `check_*` function returns `CheckResult`s and never raises. Bad input (not
base64, wrong CA, expired cert, ...) is a FAIL with a reason a person can act on; a check
that an earlier failure made impossible is an ERROR "not checked: <why>"; an exception in
this module's own code is an ERROR whose summary says it is a cockpit bug and whose
evidence carries ``internal_error: true``.

Key material never appears in results: evidence holds subjects, SANs, dates and SHA-256
fingerprints (lowercase hex, no colons) of certificates and public keys, never the private
key nor any of the base64 values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from probes.certresults import aware, bug, day, guarded, n_days, not_checked, result, scrubbed, secret_fragments
from probes.model import CheckResult, Verdict
from probes.pem import decode_b64_pem, info_of, load_certs, load_key, spki_sha256

__all__ = ["CA_VAR", "CERT_VAR", "CHECK_IDS", "KEY_VAR", "check_material"]

CA_VAR = "INTERNAL_CA_CRT_B64"
CERT_VAR = "INTERNAL_TLS_CERT_B64"
KEY_VAR = "INTERNAL_TLS_KEY_B64"
VARS: tuple[str, str, str] = (CA_VAR, CERT_VAR, KEY_VAR)

CHECK_IDS: tuple[str, ...] = (
    "certs.present",
    "certs.decode",
    "certs.ca",
    "certs.chain",
    "certs.key_match",
    "certs.san",
    "certs.expiry",
)


# --- parsed facts ----------------------------------------------------------------------------------


# --- result helpers ---------------------------------------------------------------------------------


# --- check_material --------------------------------------------------------------------------------


@dataclass
class _Decoded:
    """What the decode step produced; None plus a reason (in `why`) where it produced nothing."""

    ca: list[x509.Certificate] | None = None
    chain: list[x509.Certificate] | None = None  # server cert first, then anything bundled with it
    key: PrivateKeyTypes | None = None
    key_pem: bytes | None = None
    why: dict[str, str] = field(default_factory=dict)  # var -> why it is unavailable


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _present(values: Mapping[str, str | None], target: str, needs: Sequence[str] = VARS) -> CheckResult:
    missing = [v for v in VARS if v in needs and _blank(values[v])]
    present = [v for v in VARS if not _blank(values[v])]
    ev = {"missing": missing, "present": present, "needs": list(needs)}
    if missing:
        return result(
            "certs.present",
            target,
            Verdict.FAIL,
            f"missing: {', '.join(missing)} — push {'it' if len(missing) == 1 else 'them'} to Secrets Manager",
            ev,
        )
    if tuple(needs) == VARS:
        return result("certs.present", target, Verdict.OK, "all three cert values are present", ev)
    return result("certs.present", target, Verdict.OK, f"{', '.join(needs)} present (what this service needs)", ev)


def _decode(values: Mapping[str, str | None], target: str, out: _Decoded) -> CheckResult:
    why = out.why
    status: dict[str, str] = {}
    for var in VARS:
        raw = values[var]
        if raw is None or not raw.strip():
            why[var] = f"{var} is missing"
            status[var] = "missing"
            continue
        try:
            pem = decode_b64_pem(raw)
            if var == KEY_VAR:
                out.key = load_key(pem)
                out.key_pem = pem
            else:
                certs = load_certs(pem)
                if var == CA_VAR:
                    out.ca = certs
                else:
                    out.chain = certs
            status[var] = "ok"
        except ValueError as e:
            why[var] = f"{var} does not decode"
            status[var] = str(e)
    bad = [f"{v} {status[v]}" for v in VARS if status[v] not in ("ok", "missing")]
    ok = [v for v in VARS if status[v] == "ok"]
    ev: dict[str, Any] = {"status": dict(status)}
    if bad:
        return result(
            "certs.decode",
            target,
            Verdict.FAIL,
            "; ".join(bad) + " — push base64 of the right PEM file (base64 -w0 file.pem)",
            ev,
        )
    if not ok:
        return not_checked("certs.decode", target, "all three values are missing")
    missing = [v for v in VARS if status[v] == "missing"]
    if missing:
        return result(
            "certs.decode",
            target,
            Verdict.OK,
            f"{', '.join(ok)} decode to valid PEM ({', '.join(missing)} missing, not checked)",
            ev,
        )
    return result("certs.decode", target, Verdict.OK, "all three values decode to valid PEM", ev)


def _ca(d: _Decoded, target: str, now: datetime, warn_days: int) -> CheckResult:
    if d.ca is None:
        return not_checked("certs.ca", target, d.why.get(CA_VAR, "no CA"))
    infos = [info_of(c) for c in d.ca]
    ev: dict[str, Any] = {"ca": [i.to_evidence() for i in infos]}
    if d.chain is not None and any(
        c.fingerprint(hashes.SHA256()) == d.chain[0].fingerprint(hashes.SHA256()) for c in d.ca
    ):
        return result(
            "certs.ca",
            target,
            Verdict.FAIL,
            f"{CA_VAR} holds the server cert itself, not the CA — push the CA that issued it",
            ev,
        )
    problems: list[str] = []
    warnings: list[str] = []
    for cert, info in zip(d.ca, infos, strict=True):
        if not info.is_ca:
            problems.append(f"{info.subject} is not a CA (basicConstraints CA:TRUE absent)")
            continue
        try:
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not ku.key_cert_sign:
                problems.append(f"{info.subject} may not sign certificates (keyUsage lacks keyCertSign)")
        except x509.ExtensionNotFound:
            pass
        if now > info.not_after:
            problems.append(f"CA {info.subject} expired on {day(info.not_after)}")
        elif now < info.not_before:
            problems.append(f"CA {info.subject} is not valid until {info.not_before.isoformat()}")
        elif info.not_after - now < timedelta(days=warn_days):
            days = (info.not_after - now) // timedelta(days=1)
            warnings.append(f"CA {info.subject} expires in {n_days(days)} ({day(info.not_after)})")
    if problems:
        return result(
            "certs.ca",
            target,
            Verdict.FAIL,
            f"{CA_VAR}: " + "; ".join(problems) + " — push the internal CA certificate",
            ev,
        )
    if warnings:
        return result("certs.ca", target, Verdict.WARN, "; ".join(warnings) + " — plan a CA rotation", ev)
    names = ", ".join(i.subject for i in infos)
    return result("certs.ca", target, Verdict.OK, f"CA is a valid CA: {names}", ev)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chain(d: _Decoded, target: str) -> CheckResult:
    if d.chain is None or d.ca is None:
        reason = d.why.get(CERT_VAR) if d.chain is None else d.why.get(CA_VAR)
        return not_checked("certs.chain", target, reason or "no cert or no CA")
    leaf = d.chain[0]
    intermediates = d.chain[1:]
    ev: dict[str, Any] = {
        "cert_issuer": leaf.issuer.rfc4514_string(),
        "ca_subjects": [c.subject.rfc4514_string() for c in d.ca],
        "ca_fingerprints_sha256": [c.fingerprint(hashes.SHA256()).hex() for c in d.ca],
    }
    path = [leaf]
    current = leaf
    for _ in range(len(intermediates) + 1):
        root = next((ca for ca in d.ca if _issued_by(current, ca)), None)
        if root is not None:
            ev["path"] = [c.subject.rfc4514_string() for c in [*path, root]]
            return result(
                "certs.chain",
                target,
                Verdict.OK,
                f"server cert chains to the CA ({root.subject.rfc4514_string()})",
                ev,
            )
        nxt = next((c for c in intermediates if c not in path and _issued_by(current, c)), None)
        if nxt is None:
            break
        path.append(nxt)
        current = nxt
    same_name = any(ca.subject == current.issuer for ca in d.ca)
    if same_name:
        detail = (
            f"issuer {current.issuer.rfc4514_string()} has the CA's name but its signature does not "
            "verify with the CA's key (CA regenerated?)"
        )
    else:
        detail = f"cert issuer is {current.issuer.rfc4514_string()}, CA is {', '.join(ev['ca_subjects'])}"
    return result(
        "certs.chain",
        target,
        Verdict.FAIL,
        f"server cert was not issued by {CA_VAR}: {detail} — push the CA that issued the cert, "
        "or reissue the cert from this CA",
        ev,
    )


def _key_match(d: _Decoded, target: str) -> CheckResult:
    if d.chain is None or d.key is None:
        reason = d.why.get(CERT_VAR) if d.chain is None else d.why.get(KEY_VAR)
        return not_checked("certs.key_match", target, reason or "no cert or no key")
    cert_pub = spki_sha256(d.chain[0].public_key())
    key_pub = spki_sha256(d.key.public_key())
    ev = {"cert_pubkey_sha256": cert_pub, "key_pubkey_sha256": key_pub}
    if cert_pub != key_pub:
        return result(
            "certs.key_match",
            target,
            Verdict.FAIL,
            f"{KEY_VAR} does not belong to the server cert (public keys differ: key {key_pub[:12]}…, "
            f"cert {cert_pub[:12]}…) — push the key generated with this cert; servers refuse to start",
            ev,
        )
    return result("certs.key_match", target, Verdict.OK, "private key matches the server cert", ev)


def _wildcard_match(pattern: str, name: str) -> bool:
    """RFC 6125 as OpenSSL applies it: '*' only as the whole leftmost label, matching one label,
    with at least two labels after it ('*.example.com', not '*.com')."""
    if pattern == name:
        return True
    if not pattern.startswith("*."):
        return False
    rest = pattern[2:]
    if "*" in rest or rest.count(".") < 1:
        return False
    head, sep, tail = name.partition(".")
    return bool(sep) and bool(head) and tail == rest


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _san(d: _Decoded, target: str, dns_name: str) -> CheckResult:
    if d.chain is None:
        return not_checked("certs.san", target, d.why.get(CERT_VAR, "no cert"))
    if not dns_name.strip():
        return not_checked("certs.san", target, "no DNS name given to check against")
    info = info_of(d.chain[0])
    ev: dict[str, Any] = {
        "dns_name": dns_name,
        "sans_dns": list(info.sans_dns),
        "sans_ip": list(info.sans_ip),
    }
    has = ", ".join([*info.sans_dns, *info.sans_ip]) or "none"
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(dns_name.strip())
    except ValueError:
        ip = None
    if ip is not None:
        covered = any(ipaddress.ip_address(s) == ip for s in info.sans_ip)
    else:
        want = _norm(dns_name)
        covered = any(_wildcard_match(_norm(s), want) for s in info.sans_dns)
    if covered:
        return result("certs.san", target, Verdict.OK, f"server cert SAN covers {dns_name}", ev)
    if not info.sans_dns and not info.sans_ip:
        summary = (
            f"server cert has no SAN (only {info.subject}; clients ignore the CN) — reissue the cert "
            f"with SAN {dns_name}"
        )
    else:
        summary = f"server cert SAN does not cover {dns_name} (has: {has}) — reissue the cert with that name"
    return result("certs.san", target, Verdict.FAIL, summary, ev)


def _expiry(d: _Decoded, target: str, now: datetime, warn_days: int) -> CheckResult:
    if d.chain is None:
        return not_checked("certs.expiry", target, d.why.get(CERT_VAR, "no cert"))
    info = info_of(d.chain[0])
    left = info.not_after - now
    days_left = left // timedelta(days=1)
    ev: dict[str, Any] = {
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "days_left": days_left,
        "warn_days": warn_days,
        "now": now.isoformat(),
    }
    if now < info.not_before:
        return result(
            "certs.expiry",
            target,
            Verdict.FAIL,
            f"server cert is not valid until {info.not_before.isoformat()} — check the clock or reissue "
            "the cert with a past start date",
            ev,
        )
    if left <= timedelta(0):
        ago = (-left) // timedelta(days=1)
        return result(
            "certs.expiry",
            target,
            Verdict.FAIL,
            f"server cert expired on {day(info.not_after)} ({n_days(ago)} ago) — reissue it and push it",
            ev,
        )
    if left < timedelta(days=warn_days):
        return result(
            "certs.expiry",
            target,
            Verdict.WARN,
            f"server cert expires in {n_days(days_left)} ({day(info.not_after)}) — plan a rotation",
            ev,
        )
    return result(
        "certs.expiry",
        target,
        Verdict.OK,
        f"server cert valid until {day(info.not_after)} ({n_days(days_left)} left)",
        ev,
    )


def check_material(
    ca_b64: str | None,
    cert_b64: str | None,
    key_b64: str | None,
    *,
    dns_name: str,
    target: str,
    now: datetime,
    warn_days: int = 30,
    needs: Sequence[str] = VARS,
) -> list[CheckResult]:
    """The checks of one set of material, in `CHECK_IDS` order. Never raises.

    `needs`: the variables this service holds and needs (the inventory's `tls_material`): a service
    that needs the CA only is checked for the CA only (present, decode, ca); the server cert's checks
    (chain, key match, SAN, expiry) run where the cert is needed, the key match where the key is.
    A private key held by a service that does not need it is flagged (`certs.key_scope`, WARN).
    `now` is the time to judge validity at (a naive datetime is taken as UTC).
    """
    try:
        values: dict[str, str | None] = {CA_VAR: ca_b64, CERT_VAR: cert_b64, KEY_VAR: key_b64}
        if tuple(needs) != VARS:  # what a service does not need is neither checked nor required
            values = {k: (v if k in needs else None) for k, v in values.items()}
        at = aware(now)
        d = _Decoded()
        results = [
            guarded("certs.present", target, lambda: _present(values, target, needs)),
            guarded("certs.decode", target, lambda: _decode(values, target, d)),
        ]
        for var, got in ((CA_VAR, d.ca), (CERT_VAR, d.chain), (KEY_VAR, d.key)):
            if got is None:  # only when the decode step itself crashed
                d.why.setdefault(var, f"the decode step did not finish for {var}")
        results.append(guarded("certs.ca", target, lambda: _ca(d, target, at, warn_days)))
        if CERT_VAR in needs:
            results.append(guarded("certs.chain", target, lambda: _chain(d, target)))
            if KEY_VAR in needs:
                results.append(guarded("certs.key_match", target, lambda: _key_match(d, target)))
            results += [
                guarded("certs.san", target, lambda: _san(d, target, dns_name)),
                guarded("certs.expiry", target, lambda: _expiry(d, target, at, warn_days)),
            ]
        if KEY_VAR not in needs and not _blank(key_b64):
            results.append(
                result(
                    "certs.key_scope",
                    target,
                    Verdict.WARN,
                    f"{target}'s secret holds {KEY_VAR} although {target} does not serve TLS — remove it: only the "
                    "services that serve TLS (the database) need the private key",
                    {"holds_key": True},
                )
            )
        fragments = secret_fragments([ca_b64, cert_b64, key_b64], [d.key_pem] if d.key_pem is not None else [])
        return [scrubbed(r, fragments) for r in results]
    except Exception as e:
        return [bug(check, target, e) for check in CHECK_IDS]


# --- agreement across services and what the server serves ------------------------------------------
