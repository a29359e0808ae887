"""probes.certs: pure validation of the INTERNAL_*_B64 cert material."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab import pki
from probes import certagreement, certs
from probes import pem as pemparse
from probes.certs import CA_VAR, CERT_VAR, CHECK_IDS, KEY_VAR
from probes.model import CheckResult, Verdict

DNS = "staging-database-01.voiceai.internal"
TARGET = "staging-db"
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True, scope="module")
def _material_made_at_now() -> Iterator[None]:
    """Material is issued at NOW, the time the checks judge at — not at whatever time the fixture runs
    (on a loaded machine, minutes after this module was imported)."""
    saved = pki._now
    pki._now = lambda: NOW  # type: ignore[assignment]
    try:
        yield
    finally:
        pki._now = saved  # type: ignore[assignment]


@pytest.fixture(scope="module")
def base() -> pki.Material:
    return pki.make_material(DNS, ["10.0.0.5"])


def b64s(m: pki.Material) -> tuple[str, str, str]:
    return pki.b64(m.ca_pem), pki.b64(m.cert_pem), pki.b64(m.key_pem)


def run(
    ca: str | None,
    cert: str | None,
    key: str | None,
    *,
    dns_name: str = DNS,
    now: datetime = NOW,
    warn_days: int = 30,
) -> dict[str, CheckResult]:
    results = certs.check_material(ca, cert, key, dns_name=dns_name, target=TARGET, now=now, warn_days=warn_days)
    assert [r.check for r in results] == list(CHECK_IDS)
    assert all(r.target == TARGET for r in results)
    for r in results:
        json.dumps(r.to_json())  # serialisable
        assert CheckResult.from_json(r.to_json()) == CheckResult.from_json(r.to_json())
    return {r.check: r for r in results}


def run_m(m: pki.Material, **kw: object) -> dict[str, CheckResult]:
    return run(*b64s(m), **kw)  # type: ignore[arg-type]


def verdicts(res: dict[str, CheckResult]) -> dict[str, Verdict]:
    return {k: r.verdict for k, r in res.items()}


def all_ok_except(res: dict[str, CheckResult], *checks: str) -> None:
    for k, r in res.items():
        if k not in checks:
            assert r.verdict is Verdict.OK, (k, r.summary)


def assert_no_secrets(results: Iterable[CheckResult], *materials: pki.Material, extra: Iterable[str] = ()) -> None:
    """No base64 value, private key PEM or a line of a private key body in any result."""
    forbidden: list[str] = list(extra)
    for m in materials:
        forbidden += list(b64s(m))
        forbidden += [pki.b64(m.ca_key_pem), m.key_pem.decode(), m.ca_key_pem.decode()]
        for pem in (m.key_pem, m.ca_key_pem):
            forbidden += [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
            raw = serialization.load_pem_private_key(pem, password=None)
            der = raw.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            forbidden += [der.hex(), base64.b64encode(der).decode()]
    for r in results:
        blob = json.dumps(r.to_json())
        assert "PRIVATE KEY" not in blob, r
        for f in forbidden:
            assert f not in blob, (r.check, r.summary)


# --- good paths ------------------------------------------------------------------------------------


def test_base_material_all_ok(base: pki.Material) -> None:
    res = run_m(base)
    assert set(verdicts(res).values()) == {Verdict.OK}, {k: r.summary for k, r in res.items()}
    assert res["certs.san"].summary == f"server cert SAN covers {DNS}"
    assert "824 days left" in res["certs.expiry"].summary or "825 days left" in res["certs.expiry"].summary
    assert res["certs.expiry"].evidence["days_left"] in (824, 825)
    assert res["certs.key_match"].evidence["cert_pubkey_sha256"] == res["certs.key_match"].evidence["key_pubkey_sha256"]
    assert all(r.duration_ms >= 0 for r in res.values())
    assert_no_secrets(res.values(), base)


def test_good_variant_all_ok(base: pki.Material) -> None:
    g = pki.variant("good", base, DNS)
    res = run_m(g)
    assert set(verdicts(res).values()) == {Verdict.OK}
    assert_no_secrets(res.values(), g)


# --- each broken variant fails the right check, and only that one ---------------------------------


@pytest.mark.parametrize(
    ("kind", "check", "verdict", "needle"),
    [
        ("bad-san", "certs.san", Verdict.FAIL, f"does not cover {DNS} (has: wrong.invalid)"),
        ("expired", "certs.expiry", Verdict.FAIL, "server cert expired on"),
        ("expiring-soon", "certs.expiry", Verdict.WARN, "server cert expires in 9 days"),
        ("wrong-ca", "certs.chain", Verdict.FAIL, f"was not issued by {CA_VAR}"),
        ("key-mismatch", "certs.key_match", Verdict.FAIL, f"{KEY_VAR} does not belong to the server cert"),
    ],
)
def test_variant_fails_the_right_check(
    base: pki.Material, kind: str, check: str, verdict: Verdict, needle: str
) -> None:
    v = pki.variant(kind, base, DNS)
    res = run_m(v)
    assert res[check].verdict is verdict, res[check].summary
    assert needle in res[check].summary
    assert " — " in res[check].summary  # says what to do
    all_ok_except(res, check)
    assert_no_secrets(res.values(), v, base)


def test_bad_san_summary_exact(base: pki.Material) -> None:
    res = run_m(pki.variant("bad-san", base, DNS))
    assert res["certs.san"].summary == (
        f"server cert SAN does not cover {DNS} (has: wrong.invalid) — reissue the cert with that name"
    )
    assert res["certs.san"].evidence["sans_dns"] == ["wrong.invalid"]


def test_wrong_ca_says_regenerated(base: pki.Material) -> None:
    res = run_m(pki.variant("wrong-ca", base, DNS))
    assert "CA regenerated?" in res["certs.chain"].summary


def test_expiring_soon_evidence_and_threshold(base: pki.Material) -> None:
    v = pki.variant("expiring-soon", base, DNS)
    res = run_m(v)
    assert res["certs.expiry"].evidence["days_left"] == 9  # 9 days and ~24 h, counted in whole days
    assert res["certs.expiry"].evidence["warn_days"] == 30
    assert run_m(v, warn_days=5)["certs.expiry"].verdict is Verdict.OK
    assert run_m(base, warn_days=2000)["certs.expiry"].verdict is Verdict.WARN


def test_expired_by_clock(base: pki.Material) -> None:
    na = x509.load_pem_x509_certificate(base.cert_pem).not_valid_after_utc
    res = run_m(base, now=na + timedelta(days=3))
    assert res["certs.expiry"].verdict is Verdict.FAIL
    assert "(3 days ago)" in res["certs.expiry"].summary
    assert res["certs.expiry"].evidence["days_left"] < 0
    assert run_m(base, now=na - timedelta(seconds=1))["certs.expiry"].verdict is Verdict.WARN


def test_not_yet_valid(base: pki.Material) -> None:
    cert, key = pki.make_server_cert(
        base.ca_pem,
        base.ca_key_pem,
        [DNS],
        not_before=NOW + timedelta(days=2),
        not_after=NOW + timedelta(days=90),
    )
    res = run(pki.b64(base.ca_pem), pki.b64(cert), pki.b64(key))
    assert res["certs.expiry"].verdict is Verdict.FAIL
    assert "not valid until" in res["certs.expiry"].summary


def test_naive_now_is_utc(base: pki.Material) -> None:
    res = run_m(base, now=NOW.replace(tzinfo=None))
    assert res["certs.expiry"].verdict is Verdict.OK


def test_ca_expired_or_expiring(base: pki.Material) -> None:
    ca_na = x509.load_pem_x509_certificate(base.ca_pem).not_valid_after_utc
    res = run_m(base, now=ca_na + timedelta(days=1))
    assert res["certs.ca"].verdict is Verdict.FAIL and "expired on" in res["certs.ca"].summary
    res = run_m(base, now=ca_na - timedelta(days=5))
    assert res["certs.ca"].verdict is Verdict.WARN and "expires in" in res["certs.ca"].summary


# --- present / decode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing",
    [(0,), (1,), (2,), (0, 2), (0, 1, 2)],
)
def test_present_names_the_missing(base: pki.Material, missing: tuple[int, ...]) -> None:
    vals: list[str | None] = list(b64s(base))
    for i in missing:
        vals[i] = None if i % 2 == 0 else "   "  # blank counts as missing
    res = run(*vals)
    names = [(CA_VAR, CERT_VAR, KEY_VAR)[i] for i in missing]
    r = res["certs.present"]
    assert r.verdict is Verdict.FAIL
    assert r.summary.startswith("missing: " + ", ".join(names))
    assert r.evidence["missing"] == names
    # What missing values make impossible is ERROR "not checked", never FAIL.
    if 1 in missing:
        for c in ("certs.chain", "certs.key_match", "certs.san", "certs.expiry"):
            assert res[c].verdict is Verdict.ERROR and res[c].summary.startswith("not checked:"), c
            assert CERT_VAR in res[c].summary
    if 0 in missing:
        assert res["certs.ca"].verdict is Verdict.ERROR
        assert res["certs.ca"].summary == f"not checked: {CA_VAR} is missing"
        assert res["certs.chain"].verdict is Verdict.ERROR
    if missing == (0, 1, 2):
        assert res["certs.decode"].verdict is Verdict.ERROR
        assert res["certs.decode"].summary.startswith("not checked:")
    else:
        assert res["certs.decode"].verdict is Verdict.OK
    if 1 not in missing:
        assert res["certs.san"].verdict is Verdict.OK
        assert res["certs.expiry"].verdict is Verdict.OK
    assert_no_secrets(res.values(), base)


def _pem_block(label: str, body: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n".encode() + base64.encodebytes(body) + f"-----END {label}-----\n".encode()


def _encrypted_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.mark.parametrize(
    ("slot", "make_value", "needle", "blocked"),
    [
        ("cert", lambda m: "not base64 at all!", f"{CERT_VAR} is not valid base64", "certs.san"),
        ("cert", lambda m: m.cert_pem.decode(), f"{CERT_VAR} is a raw PEM, not base64", "certs.expiry"),
        ("cert", lambda m: pki.b64(pki.b64(m.cert_pem).encode()), "base64-encoded twice", "certs.chain"),
        ("cert", lambda m: pki.b64(b"just some text\n"), "not PEM", "certs.key_match"),
        (
            "cert",
            lambda m: pki.b64(m.key_pem),
            f"{CERT_VAR} holds a private key, not a certificate",
            "certs.san",
        ),
        (
            "key",
            lambda m: pki.b64(m.cert_pem),
            f"{KEY_VAR} holds a certificate, not a private key",
            "certs.key_match",
        ),
        ("key", lambda m: pki.b64(_encrypted_key_pem()), "encrypted private key", "certs.key_match"),
        (
            "key",
            lambda m: pki.b64(_pem_block("PRIVATE KEY", b"\x30\x03garbage")),
            "private key does not parse",
            "certs.key_match",
        ),
        (
            "ca",
            lambda m: pki.b64(_pem_block("CERTIFICATE", b"\x30\x82garbage")),
            "does not parse",
            "certs.ca",
        ),
        ("ca", lambda m: "QUJDRA", f"{CA_VAR} is not valid base64", "certs.chain"),
    ],
)
def test_decode_failures(base: pki.Material, slot: str, make_value: object, needle: str, blocked: str) -> None:
    ca, cert, key = b64s(base)
    value = make_value(base)  # type: ignore[operator]
    if slot == "ca":
        ca = value
    elif slot == "cert":
        cert = value
    else:
        key = value
    res = run(ca, cert, key)
    assert res["certs.present"].verdict is Verdict.OK
    r = res["certs.decode"]
    assert r.verdict is Verdict.FAIL, r.summary
    assert needle in r.summary
    assert "internal_error" not in r.evidence  # bad input is not a bug
    assert res[blocked].verdict is Verdict.ERROR
    assert res[blocked].summary.startswith("not checked:") and "does not decode" in res[blocked].summary
    # Checks that don't depend on the broken value still run.
    if slot == "key":
        assert res["certs.san"].verdict is Verdict.OK and res["certs.chain"].verdict is Verdict.OK
    if slot == "ca":
        assert res["certs.key_match"].verdict is Verdict.OK and res["certs.expiry"].verdict is Verdict.OK
    assert_no_secrets(res.values(), base, extra=[value] if len(value) > 12 else [])


def test_decode_accepts_wrapped_base64(base: pki.Material) -> None:
    wrapped = base64.encodebytes(base.cert_pem).decode()  # 76-column lines
    assert "\n" in wrapped.strip()
    assert pemparse.decode_b64_pem(wrapped) == base.cert_pem
    res = run(pki.b64(base.ca_pem), wrapped + "\n", pki.b64(base.key_pem))
    assert set(verdicts(res).values()) == {Verdict.OK}


def test_decode_b64_pem_errors() -> None:
    for bad, why in [("", "empty"), ("%%%", "not valid base64"), ("-----BEGIN X-----", "raw PEM")]:
        with pytest.raises(ValueError, match=why):
            pemparse.decode_b64_pem(bad)


# --- CA and chain ----------------------------------------------------------------------------------


def test_ca_slot_holding_the_server_cert(base: pki.Material) -> None:
    res = run(pki.b64(base.cert_pem), pki.b64(base.cert_pem), pki.b64(base.key_pem))
    assert res["certs.ca"].verdict is Verdict.FAIL
    assert f"{CA_VAR} holds the server cert itself, not the CA" in res["certs.ca"].summary
    assert res["certs.chain"].verdict is Verdict.FAIL


def test_ca_slot_holding_another_leaf(base: pki.Material) -> None:
    other = pki.make_material("other.internal")
    res = run(pki.b64(other.cert_pem), *b64s(base)[1:])
    assert res["certs.ca"].verdict is Verdict.FAIL
    assert "is not a CA" in res["certs.ca"].summary
    assert res["certs.chain"].verdict is Verdict.FAIL
    assert "cert issuer is CN=Lab Internal CA, CA is CN=other.internal" in res["certs.chain"].summary


def test_ca_bundle_with_the_right_ca_second(base: pki.Material) -> None:
    unrelated, _ = pki.make_ca("Some Other CA")
    res = run(pki.b64(unrelated + base.ca_pem), *b64s(base)[1:])
    assert res["certs.ca"].verdict is Verdict.OK
    assert res["certs.chain"].verdict is Verdict.OK
    assert len(res["certs.ca"].evidence["ca"]) == 2


def _intermediate(base: pki.Material) -> tuple[bytes, bytes]:
    """An intermediate CA under base's CA: (cert_pem, key_pem)."""
    root = x509.load_pem_x509_certificate(base.ca_pem)
    root_key = serialization.load_pem_private_key(base.ca_key_pem, password=None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lab Intermediate")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_chain_through_bundled_intermediate(base: pki.Material) -> None:
    inter, inter_key = _intermediate(base)
    leaf, key = pki.make_server_cert(inter, inter_key, [DNS])
    with_chain = run(pki.b64(base.ca_pem), pki.b64(leaf + inter), pki.b64(key))
    assert set(verdicts(with_chain).values()) == {Verdict.OK}
    assert with_chain["certs.chain"].evidence["path"] == [
        "CN=" + DNS,
        "CN=Lab Intermediate",
        "CN=Lab Internal CA",
    ]
    without = run(pki.b64(base.ca_pem), pki.b64(leaf), pki.b64(key))
    assert without["certs.chain"].verdict is Verdict.FAIL
    assert "cert issuer is CN=Lab Intermediate" in without["certs.chain"].summary


# --- SAN -------------------------------------------------------------------------------------------


def _with_names(base: pki.Material, names: list[str], ips: list[str] | None = None) -> tuple[str, str, str]:
    cert, key = pki.make_server_cert(base.ca_pem, base.ca_key_pem, names, ips or [])
    return pki.b64(base.ca_pem), pki.b64(cert), pki.b64(key)


@pytest.mark.parametrize(
    ("sans", "dns_name", "ok"),
    [
        (["*.voiceai.internal"], DNS, True),
        (["*.VoiceAI.internal"], DNS.upper(), True),
        (["other.voiceai.internal", DNS], DNS + ".", True),
        (["*.voiceai.internal"], "voiceai.internal", False),  # wildcard needs a label
        (["*.voiceai.internal"], "a.b.voiceai.internal", False),  # one label only
        (["*.internal"], "db.internal", False),  # too broad, OpenSSL refuses it too
        (["db*.voiceai.internal"], "db1.voiceai.internal", False),  # partial wildcards not honoured
        (["staging-database-01.voiceai.internal.evil"], DNS, False),
    ],
)
def test_san_matching(base: pki.Material, sans: list[str], dns_name: str, ok: bool) -> None:
    res = run(*_with_names(base, sans), dns_name=dns_name)
    assert res["certs.san"].verdict is (Verdict.OK if ok else Verdict.FAIL), res["certs.san"].summary


def test_san_ip_name(base: pki.Material) -> None:
    assert run_m(base, dns_name="10.0.0.5")["certs.san"].verdict is Verdict.OK
    assert run_m(base, dns_name="10.0.0.6")["certs.san"].verdict is Verdict.FAIL


def test_cn_is_not_used(base: pki.Material) -> None:
    # A cert whose CN is the name but whose SAN is not: FAIL (CN is ignored by verifying clients).
    root = x509.load_pem_x509_certificate(base.ca_pem)
    root_key = serialization.load_pem_private_key(base.ca_key_pem, password=None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    key = serialization.load_pem_private_key(base.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)

    def build(with_san: bool) -> bytes:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DNS)]))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=90))
        )
        if with_san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("x.invalid")]), critical=False)
        return b.sign(root_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    res = run(pki.b64(base.ca_pem), pki.b64(build(True)), pki.b64(base.key_pem))
    assert res["certs.san"].verdict is Verdict.FAIL and "(has: x.invalid)" in res["certs.san"].summary
    res = run(pki.b64(base.ca_pem), pki.b64(build(False)), pki.b64(base.key_pem))
    assert res["certs.san"].verdict is Verdict.FAIL
    assert "has no SAN" in res["certs.san"].summary and f"CN={DNS}" in res["certs.san"].summary
    all_ok_except(res, "certs.san")


def test_san_without_dns_name_is_not_checked(base: pki.Material) -> None:
    r = run_m(base, dns_name="")["certs.san"]
    assert r.verdict is Verdict.ERROR and r.summary.startswith("not checked:")


# --- robustness: bugs vs bad input, never raising, no leaks ---------------------------------------


def test_bug_in_a_check_is_an_error_marked_as_ours(base: pki.Material, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> CheckResult:
        raise RuntimeError("oops")

    monkeypatch.setattr(certs, "_san", boom)
    res = run_m(base)
    r = res["certs.san"]
    assert r.verdict is Verdict.ERROR
    assert "bug in the cockpit" in r.summary and "RuntimeError" in r.summary
    assert r.evidence["internal_error"] is True
    all_ok_except(res, "certs.san")


def test_crash_in_decode_blocks_later_checks(base: pki.Material, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> CheckResult:
        raise KeyError("x")

    monkeypatch.setattr(certs, "_decode", boom)
    res = run_m(base)
    assert res["certs.decode"].evidence["internal_error"] is True
    for c in ("certs.ca", "certs.chain", "certs.key_match", "certs.san", "certs.expiry"):
        assert res[c].verdict is Verdict.ERROR and res[c].summary.startswith("not checked:"), c


def test_leaking_result_is_withheld(base: pki.Material, monkeypatch: pytest.MonkeyPatch) -> None:
    key_b64 = pki.b64(base.key_pem)

    def leaky(*a: object, **k: object) -> CheckResult:
        return CheckResult("certs.expiry", TARGET, Verdict.OK, "fine", {"oops": key_b64})

    monkeypatch.setattr(certs, "_expiry", leaky)
    res = run_m(base)
    r = res["certs.expiry"]
    assert r.verdict is Verdict.ERROR and "withheld" in r.summary
    assert_no_secrets(res.values(), base)


def test_wrong_types_do_not_raise(base: pki.Material) -> None:
    results = certs.check_material(
        123,  # type: ignore[arg-type]
        b"bytes",  # type: ignore[arg-type]
        None,
        dns_name=DNS,
        target=TARGET,
        now=NOW,
    )
    assert [r.check for r in results] == list(CHECK_IDS)
    assert any(r.evidence.get("internal_error") for r in results)
    results = certs.check_material(*b64s(base), dns_name=DNS, target=TARGET, now="now")  # type: ignore[arg-type]
    assert len(results) == len(CHECK_IDS) and all(r.verdict is Verdict.ERROR for r in results)


# --- parsing helpers -------------------------------------------------------------------------------


def test_cert_info_and_fingerprints(base: pki.Material) -> None:
    info = pemparse.cert_info(base.cert_pem)
    assert info.subject == f"CN={DNS}" and info.issuer == "CN=Lab Internal CA"
    assert info.sans_dns == (DNS,) and info.sans_ip == ("10.0.0.5",)
    assert info.is_ca is False and pemparse.cert_info(base.ca_pem).is_ca is True
    assert info.not_before.tzinfo is not None and info.not_before < NOW < info.not_after
    assert re.fullmatch(r"[0-9a-f]{64}", info.fingerprint_sha256)
    assert re.fullmatch(r"[0-9a-f]{64}", info.pubkey_sha256)
    assert pemparse.fingerprint(base.cert_pem) == info.fingerprint_sha256
    der = x509.load_pem_x509_certificate(base.cert_pem).public_bytes(serialization.Encoding.DER)
    assert pemparse.fingerprint(der) == info.fingerprint_sha256  # DER accepted too
    assert pemparse.cert_info(der) == info
    assert pemparse.pubkey_fingerprint_of_key(base.key_pem) == info.pubkey_sha256
    other = pki.variant("key-mismatch", base, DNS)
    assert pemparse.pubkey_fingerprint_of_key(other.key_pem) != info.pubkey_sha256
    with pytest.raises(ValueError):
        pemparse.cert_info(b"garbage")
    with pytest.raises(ValueError):
        pemparse.pubkey_fingerprint_of_key(base.cert_pem)


# --- agreement -------------------------------------------------------------------------------------


def test_agreement_all_same(base: pki.Material) -> None:
    r = certagreement.check_agreement({s: b64s(base) for s in ("api", "web", "voice")}, target="env")
    assert r.verdict is Verdict.OK and r.check == "certs.agreement" and r.target == "env"
    assert r.summary == "all 3 services hold the same CA, cert and key"
    assert_no_secrets([r], base)


def test_agreement_names_the_odd_one_and_the_lacking(base: pki.Material) -> None:
    g = pki.variant("good", base, DNS)
    ca, cert, key = b64s(base)
    per = {
        "api": (ca, cert, key),
        "web": (ca, cert, key),
        "voice": (ca, pki.b64(g.cert_pem), pki.b64(g.key_pem)),
        "ops": (ca, cert, None),
    }
    r = certagreement.check_agreement(per, target="env")
    assert r.verdict is Verdict.FAIL
    assert f"voice holds a different {CERT_VAR} than api, ops, web" in r.summary
    assert f"voice holds a different {KEY_VAR} than api, web" in r.summary
    assert f"ops lacks {KEY_VAR}" in r.summary
    assert r.evidence["differ"] == {CERT_VAR: ["voice"], KEY_VAR: ["voice"]}
    assert r.evidence["lacking"] == {"ops": [KEY_VAR]}
    assert_no_secrets([r], base, g)


def test_agreement_ignores_base64_line_wrapping(base: pki.Material) -> None:
    ca, cert, key = b64s(base)
    wrapped = base64.encodebytes(base.cert_pem).decode()
    r = certagreement.check_agreement({"api": (ca, cert, key), "web": (ca, wrapped, key)}, target="env")
    assert r.verdict is Verdict.OK, r.summary


def test_agreement_edge_cases(base: pki.Material) -> None:
    r = certagreement.check_agreement({}, target="env")
    assert r.verdict is Verdict.ERROR and r.summary.startswith("not checked:")
    r = certagreement.check_agreement({"api": b64s(base)}, target="env")
    assert r.verdict is Verdict.OK and "only api" in r.summary
    r = certagreement.check_agreement({"api": (None, None, None), "web": (None, None, None)}, target="env")
    assert r.verdict is Verdict.FAIL and "api lacks" in r.summary and "web lacks" in r.summary


# --- served cert -----------------------------------------------------------------------------------


def test_served_matches(base: pki.Material) -> None:
    der = x509.load_pem_x509_certificate(base.cert_pem).public_bytes(serialization.Encoding.DER)
    for served in (der, base.cert_pem):
        r = certagreement.check_served_matches(served, base.cert_pem, target="db:5432")
        assert r.verdict is Verdict.OK and r.check == "certs.served" and r.target == "db:5432"
        assert r.evidence["served"]["fingerprint_sha256"] == pemparse.fingerprint(base.cert_pem)


def test_served_differs_after_rotation(base: pki.Material) -> None:
    g = pki.variant("good", base, DNS)
    r = certagreement.check_served_matches(base.cert_pem, g.cert_pem, target="db:5432")
    assert r.verdict is Verdict.FAIL
    assert r.summary.endswith("restart did not pick up new material?")
    assert pemparse.fingerprint(base.cert_pem)[:16] in r.summary
    assert pemparse.fingerprint(g.cert_pem)[:16] in r.summary
    assert_no_secrets([r], base, g)


def test_served_unreadable_is_error(base: pki.Material) -> None:
    r = certagreement.check_served_matches(b"", base.cert_pem, target="db")
    assert r.verdict is Verdict.ERROR and "not checked" in r.summary
    r = certagreement.check_served_matches(b"\x30\x82junk", base.cert_pem, target="db")
    assert r.verdict is Verdict.ERROR and "could not read the served certificate" in r.summary
    r = certagreement.check_served_matches(base.cert_pem, b"nope", target="db")
    assert r.verdict is Verdict.ERROR and "could not read the expected certificate" in r.summary
