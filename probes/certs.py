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

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from probes.model import CheckResult, Verdict, Why

__all__ = [
    "CA_VAR",
    "CERT_VAR",
    "CHECK_IDS",
    "KEY_VAR",
    "CertInfo",
    "cert_info",
    "check_agreement",
    "check_material",
    "check_served_matches",
    "decode_b64_pem",
    "fingerprint",
    "pubkey_fingerprint_of_key",
]

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

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PEM_BODY = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----(.*?)-----END [A-Z0-9 ]+-----", re.S)


# --- parsed facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    """Parsed facts of one certificate (all public)."""

    subject: str
    issuer: str
    sans_dns: tuple[str, ...]
    sans_ip: tuple[str, ...]
    not_before: datetime  # UTC, aware
    not_after: datetime  # UTC, aware
    is_ca: bool
    fingerprint_sha256: str  # of the DER certificate
    pubkey_sha256: str  # of the DER SubjectPublicKeyInfo

    def to_evidence(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans_dns": list(self.sans_dns),
            "sans_ip": list(self.sans_ip),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "is_ca": self.is_ca,
            "fingerprint_sha256": self.fingerprint_sha256,
            "pubkey_sha256": self.pubkey_sha256,
        }


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spki_sha256(public_key: Any) -> str:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _sha256_hex(der)


def _pem_labels(data: bytes) -> list[str]:
    return [m.decode("ascii") for m in _PEM_BEGIN.findall(data)]


def _load_certs(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, or the one DER certificate. ValueError on anything else.

    Each certificate is also parsed through (`_info`), so a malformed extension fails here, as bad
    input, and not later as if it were a bug in a check.
    """
    certs = _parse_certs(data)
    for c in certs:
        _info(c)
    return certs


def _parse_certs(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        labels = _pem_labels(data)
        if not any(label in ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE") for label in labels):
            if any("PRIVATE KEY" in label for label in labels):
                raise ValueError("holds a private key, not a certificate")
            raise ValueError(f"holds PEM of type {', '.join(labels) or '?'}, not a certificate")
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise ValueError(f"PEM certificate does not parse ({_short(e)})") from None
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise ValueError(f"neither PEM nor DER certificate ({_short(e)})") from None


def _info(cert: x509.Certificate) -> CertInfo:
    """Facts of a certificate; ValueError when the certificate itself is malformed."""
    try:
        public_key = cert.public_key()
    except UnsupportedAlgorithm as e:
        raise ValueError(f"certificate's public key algorithm is not supported ({_short(e)})") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns: tuple[str, ...] = tuple(san.get_values_for_type(x509.DNSName))
        ips: tuple[str, ...] = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        is_ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans_dns=dns,
        sans_ip=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        pubkey_sha256=_spki_sha256(public_key),
    )


def decode_b64_pem(value: str) -> bytes:
    """The PEM bytes inside a base64 value; ValueError with a human reason otherwise."""
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    if text.startswith("-----BEGIN"):
        raise ValueError("is a raw PEM, not base64 of the PEM (init.sh base64-decodes it)")
    compact = "".join(text.split())  # base64 wrapped over lines is fine
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"is not valid base64 ({_short(e)})") from None
    if b"-----BEGIN" not in raw:
        try:
            twice = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            twice = b""
        if b"-----BEGIN" in twice:
            raise ValueError("is base64-encoded twice (decodes to base64, not to a PEM)")
        raise ValueError("decodes to something that is not PEM (no '-----BEGIN' line)")
    return raw


def cert_info(pem: bytes) -> CertInfo:
    """Facts of the first certificate in `pem` (PEM or DER); ValueError if there is none."""
    return _info(_load_certs(pem)[0])


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the first certificate's DER (PEM or DER input): lowercase hex, no colons."""
    return _load_certs(pem)[0].fingerprint(hashes.SHA256()).hex()


def _load_key(key_pem: bytes) -> PrivateKeyTypes:
    labels = _pem_labels(key_pem)
    if labels and not any("PRIVATE KEY" in label for label in labels):
        if "CERTIFICATE" in labels:
            raise ValueError("holds a certificate, not a private key")
        raise ValueError(f"holds PEM of type {', '.join(labels)}, not a private key")
    if "ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in key_pem:
        raise ValueError("is an encrypted private key; the servers need it unencrypted")
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # "password was not given but private key is encrypted"
        raise ValueError("is an encrypted private key; the servers need it unencrypted") from None
    except ValueError as e:
        raise ValueError(f"private key does not parse ({_short(e)})") from None
    except UnsupportedAlgorithm as e:
        raise ValueError(f"private key uses an unsupported algorithm ({_short(e)})") from None


def pubkey_fingerprint_of_key(key_pem: bytes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo derived from a private key (PEM)."""
    return _spki_sha256(_load_key(key_pem).public_key())


def _short(e: BaseException, limit: int = 120) -> str:
    """An exception's message, first line, cut short (never used with key bytes in it)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


# --- result helpers ---------------------------------------------------------------------------------


def _result(
    check: str, target: str, verdict: Verdict, summary: str, evidence: Mapping[str, Any] | None = None
) -> CheckResult:
    return CheckResult(check=check, target=target, verdict=verdict, summary=summary, evidence=evidence or {})


def _not_checked(check: str, target: str, why: str) -> CheckResult:
    return _result(check, target, Verdict.ERROR, f"not checked: {why}", {"not_checked": why})


def _bug(check: str, target: str, e: BaseException) -> CheckResult:
    # The message is kept short; check_material/check_agreement withhold any result that would
    # quote key material (`_scrubbed`).
    what = f"{type(e).__name__}: {_short(e, 200)}"
    return CheckResult(
        check,
        target,
        Verdict.ERROR,
        f"internal error in the cockpit's {check} check ({what}) — a bug in the cockpit, "
        "not a problem with the cert material; please report it",
        {"internal_error": True, "exception": what},
        why=Why.BUG,
    )


def _guarded(check: str, target: str, fn: Callable[[], CheckResult]) -> CheckResult:
    t0 = time.perf_counter()
    try:
        res = fn()
    except Exception as e:
        res = _bug(check, target, e)
    ms = (time.perf_counter() - t0) * 1000.0
    return CheckResult(res.check, res.target, res.verdict, res.summary, res.evidence, ms)


def _secret_fragments(values: Sequence[str | None], decoded_keys: Sequence[bytes]) -> list[str]:
    """Strings that must never show up in a result: the base64 values and private key bodies."""
    out: list[str] = []
    for v in values:
        if v and v.strip():
            compact = "".join(v.split())
            out.append(compact[:32])  # any 32-char run is plenty to recognise a leak
            out.extend(line for line in v.split() if len(line) >= 16)
    for pem in decoded_keys:
        for body in _PEM_BODY.findall(pem):
            out.extend(line.decode("ascii", "replace") for line in body.split() if len(line) >= 16)
    return out


def _scrubbed(res: CheckResult, fragments: Sequence[str]) -> CheckResult:
    """Defence in depth: withhold a result that would carry key material (a bug if it happens)."""
    if not fragments:
        return res
    blob = json.dumps(res.to_json(), default=str)
    if any(f in blob for f in fragments):
        return _result(
            res.check,
            res.target,
            Verdict.ERROR,
            f"internal error in the cockpit's {res.check} check: its result would have shown key "
            "material and was withheld — a bug in the cockpit; please report it",
            {"internal_error": True, "withheld": True},
        )
    return res


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _day(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d")


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


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
        return _result(
            "certs.present",
            target,
            Verdict.FAIL,
            f"missing: {', '.join(missing)} — push {'it' if len(missing) == 1 else 'them'} "
            "to Secrets Manager",
            ev,
        )
    if tuple(needs) == VARS:
        return _result("certs.present", target, Verdict.OK, "all three cert values are present", ev)
    return _result("certs.present", target, Verdict.OK, f"{', '.join(needs)} present (what this service needs)",
                   ev)


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
                out.key = _load_key(pem)
                out.key_pem = pem
            else:
                certs = _load_certs(pem)
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
        return _result(
            "certs.decode",
            target,
            Verdict.FAIL,
            "; ".join(bad) + " — push base64 of the right PEM file (base64 -w0 file.pem)",
            ev,
        )
    if not ok:
        return _not_checked("certs.decode", target, "all three values are missing")
    missing = [v for v in VARS if status[v] == "missing"]
    if missing:
        return _result(
            "certs.decode",
            target,
            Verdict.OK,
            f"{', '.join(ok)} decode to valid PEM ({', '.join(missing)} missing, not checked)",
            ev,
        )
    return _result("certs.decode", target, Verdict.OK, "all three values decode to valid PEM", ev)


def _ca(d: _Decoded, target: str, now: datetime, warn_days: int) -> CheckResult:
    if d.ca is None:
        return _not_checked("certs.ca", target, d.why.get(CA_VAR, "no CA"))
    infos = [_info(c) for c in d.ca]
    ev: dict[str, Any] = {"ca": [i.to_evidence() for i in infos]}
    if d.chain is not None and any(
        c.fingerprint(hashes.SHA256()) == d.chain[0].fingerprint(hashes.SHA256()) for c in d.ca
    ):
        return _result(
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
            problems.append(f"CA {info.subject} expired on {_day(info.not_after)}")
        elif now < info.not_before:
            problems.append(f"CA {info.subject} is not valid until {info.not_before.isoformat()}")
        elif info.not_after - now < timedelta(days=warn_days):
            days = (info.not_after - now) // timedelta(days=1)
            warnings.append(f"CA {info.subject} expires in {_days(days)} ({_day(info.not_after)})")
    if problems:
        return _result(
            "certs.ca",
            target,
            Verdict.FAIL,
            f"{CA_VAR}: " + "; ".join(problems) + " — push the internal CA certificate",
            ev,
        )
    if warnings:
        return _result("certs.ca", target, Verdict.WARN, "; ".join(warnings) + " — plan a CA rotation", ev)
    names = ", ".join(i.subject for i in infos)
    return _result("certs.ca", target, Verdict.OK, f"CA is a valid CA: {names}", ev)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chain(d: _Decoded, target: str) -> CheckResult:
    if d.chain is None or d.ca is None:
        reason = d.why.get(CERT_VAR) if d.chain is None else d.why.get(CA_VAR)
        return _not_checked("certs.chain", target, reason or "no cert or no CA")
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
            return _result(
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
    return _result(
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
        return _not_checked("certs.key_match", target, reason or "no cert or no key")
    cert_pub = _spki_sha256(d.chain[0].public_key())
    key_pub = _spki_sha256(d.key.public_key())
    ev = {"cert_pubkey_sha256": cert_pub, "key_pubkey_sha256": key_pub}
    if cert_pub != key_pub:
        return _result(
            "certs.key_match",
            target,
            Verdict.FAIL,
            f"{KEY_VAR} does not belong to the server cert (public keys differ: key {key_pub[:12]}…, "
            f"cert {cert_pub[:12]}…) — push the key generated with this cert; servers refuse to start",
            ev,
        )
    return _result("certs.key_match", target, Verdict.OK, "private key matches the server cert", ev)


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
        return _not_checked("certs.san", target, d.why.get(CERT_VAR, "no cert"))
    if not dns_name.strip():
        return _not_checked("certs.san", target, "no DNS name given to check against")
    info = _info(d.chain[0])
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
        return _result("certs.san", target, Verdict.OK, f"server cert SAN covers {dns_name}", ev)
    if not info.sans_dns and not info.sans_ip:
        summary = (
            f"server cert has no SAN (only {info.subject}; clients ignore the CN) — reissue the cert "
            f"with SAN {dns_name}"
        )
    else:
        summary = f"server cert SAN does not cover {dns_name} (has: {has}) — reissue the cert with that name"
    return _result("certs.san", target, Verdict.FAIL, summary, ev)


def _expiry(d: _Decoded, target: str, now: datetime, warn_days: int) -> CheckResult:
    if d.chain is None:
        return _not_checked("certs.expiry", target, d.why.get(CERT_VAR, "no cert"))
    info = _info(d.chain[0])
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
        return _result(
            "certs.expiry",
            target,
            Verdict.FAIL,
            f"server cert is not valid until {info.not_before.isoformat()} — check the clock or reissue "
            "the cert with a past start date",
            ev,
        )
    if left <= timedelta(0):
        ago = (-left) // timedelta(days=1)
        return _result(
            "certs.expiry",
            target,
            Verdict.FAIL,
            f"server cert expired on {_day(info.not_after)} ({_days(ago)} ago) — reissue it and push it",
            ev,
        )
    if left < timedelta(days=warn_days):
        return _result(
            "certs.expiry",
            target,
            Verdict.WARN,
            f"server cert expires in {_days(days_left)} ({_day(info.not_after)}) — plan a rotation",
            ev,
        )
    return _result(
        "certs.expiry",
        target,
        Verdict.OK,
        f"server cert valid until {_day(info.not_after)} ({_days(days_left)} left)",
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
        at = _aware(now)
        d = _Decoded()
        results = [
            _guarded("certs.present", target, lambda: _present(values, target, needs)),
            _guarded("certs.decode", target, lambda: _decode(values, target, d)),
        ]
        for var, got in ((CA_VAR, d.ca), (CERT_VAR, d.chain), (KEY_VAR, d.key)):
            if got is None:  # only when the decode step itself crashed
                d.why.setdefault(var, f"the decode step did not finish for {var}")
        results.append(_guarded("certs.ca", target, lambda: _ca(d, target, at, warn_days)))
        if CERT_VAR in needs:
            results.append(_guarded("certs.chain", target, lambda: _chain(d, target)))
            if KEY_VAR in needs:
                results.append(_guarded("certs.key_match", target, lambda: _key_match(d, target)))
            results += [
                _guarded("certs.san", target, lambda: _san(d, target, dns_name)),
                _guarded("certs.expiry", target, lambda: _expiry(d, target, at, warn_days)),
            ]
        if KEY_VAR not in needs and not _blank(key_b64):
            results.append(_result(
                "certs.key_scope", target, Verdict.WARN,
                f"{target}'s secret holds {KEY_VAR} although {target} does not serve TLS — remove it: only the "
                "services that serve TLS (the database) need the private key", {"holds_key": True}))
        fragments = _secret_fragments(
            [ca_b64, cert_b64, key_b64], [d.key_pem] if d.key_pem is not None else []
        )
        return [_scrubbed(r, fragments) for r in results]
    except Exception as e:
        return [_bug(check, target, e) for check in CHECK_IDS]


# --- agreement across services and what the server serves ------------------------------------------


def _value_digest(value: str) -> str:
    """Digest of what init.sh would write: the decoded bytes when the value is base64, else the value."""
    compact = "".join(value.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        data = value.strip().encode("utf-8", "replace")
    return _sha256_hex(data)


def _agreement(
    per_service: Mapping[str, tuple[str | None, str | None, str | None]], target: str,
    needs: Mapping[str, Sequence[str]] | None = None,
) -> CheckResult:
    if not per_service:
        return _not_checked("certs.agreement", target, "no services given")
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
            return _result(
                "certs.agreement", target, Verdict.OK, f"only {services[0]} holds cert material", ev
            )
        return _result(
            "certs.agreement",
            target,
            Verdict.OK,
            f"all {len(services)} services hold the same CA, cert and key" if needs is None else
            f"all {len(services)} services hold the same material (each what it needs)",
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
    return _result(
        "certs.agreement",
        target,
        Verdict.FAIL,
        "services disagree on the cert material: " + "; ".join(parts) + " — push the material again "
        "(cockpit certs push) so every service holds the same values",
        ev,
    )


def check_agreement(
    per_service: Mapping[str, tuple[str | None, str | None, str | None]], *, target: str,
    needs: Mapping[str, Sequence[str]] | None = None,
) -> CheckResult:
    """Do all services hold the same (CA, cert, key) values? Compared by SHA-256, never shown.

    `per_service` maps a service name to its (INTERNAL_CA_CRT_B64, INTERNAL_TLS_CERT_B64,
    INTERNAL_TLS_KEY_B64) values, None where absent. Check id "certs.agreement".
    """
    values = [v for triple in per_service.values() for v in triple] if per_service else []
    res = _guarded("certs.agreement", target, lambda: _agreement(per_service, target, needs))
    try:
        return _scrubbed(res, _secret_fragments(values, []))
    except Exception as e:
        return _bug("certs.agreement", target, e)


def _served(served: bytes, expected_cert_pem: bytes, target: str) -> CheckResult:
    check = "certs.served"
    if not served:
        return _not_checked(check, target, "the server presented no certificate")
    try:
        got = _info(_load_certs(served)[0])
    except ValueError as e:
        return _result(check, target, Verdict.ERROR, f"could not read the served certificate: {e}")
    try:
        want = _info(_load_certs(expected_cert_pem)[0])
    except ValueError as e:
        return _result(
            check, target, Verdict.ERROR, f"could not read the expected certificate ({CERT_VAR}): {e}"
        )
    ev: dict[str, Any] = {"served": got.to_evidence(), "expected": want.to_evidence()}
    if got.fingerprint_sha256 == want.fingerprint_sha256:
        return _result(
            check,
            target,
            Verdict.OK,
            f"serves the cert from Secrets Manager (sha256 {got.fingerprint_sha256[:16]}…)",
            ev,
        )
    return _result(
        check,
        target,
        Verdict.FAIL,
        f"serves a different cert than Secrets Manager holds (served sha256 {got.fingerprint_sha256[:16]}…, "
        f"valid until {_day(got.not_after)}; expected {want.fingerprint_sha256[:16]}…, valid until "
        f"{_day(want.not_after)}) — restart did not pick up new material?",
        ev,
    )


def check_served_matches(
    served_cert_der_or_pem: bytes, expected_cert_pem: bytes, *, target: str
) -> CheckResult:
    """Is the certificate the server serves the one in Secrets Manager? By SHA-256 fingerprint.

    `served_cert_der_or_pem` is what the TLS handshake gave (DER from
    ``SSLObject.getpeercert(binary_form=True)``, or PEM); `expected_cert_pem` the decoded
    INTERNAL_TLS_CERT_B64. Check id "certs.served". ERROR when either cannot be read.
    """
    return _guarded(
        "certs.served", target, lambda: _served(served_cert_der_or_pem, expected_cert_pem, target)
    )
