"""lab.pki: the certificates must be what OpenSSL-based servers and verifying clients accept.

Pure and fast: TLS handshakes run in memory (ssl.MemoryBIO), no sockets.
"""

from __future__ import annotations

import base64
import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from lab import pki

DNS = "staging-database-01.voiceai.internal"
IP = "10.0.0.5"


@pytest.fixture(scope="module")
def base() -> pki.Material:
    return pki.make_material(DNS, [IP])


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _spki(pub: object) -> bytes:
    return pub.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_spki(key_pem: bytes) -> bytes:
    return _spki(serialization.load_pem_private_key(key_pem, password=None).public_key())


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


def handshake(m: pki.Material, server_hostname: str, tmp_path: Path) -> bytes:
    """A TLS handshake in memory, server loaded from files as the real servers are; returns the DER
    the client saw. Raises what ssl raises (verification errors, key mismatch at load)."""
    d = tmp_path / "tls"
    pki.write_material(m, d)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(d / "server.crt", d / "server.key")
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, CERT_REQUIRED
    cctx.load_verify_locations(cafile=str(d / "ca.crt"))
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    c_done = s_done = False
    for _ in range(20):
        if not c_done:
            try:
                client.do_handshake()
                c_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not s_done:
            try:
                server.do_handshake()
                s_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if c_done and s_done:
            der = client.getpeercert(binary_form=True)
            assert der is not None
            return der
    raise AssertionError("handshake did not finish")


# --- make_ca ---------------------------------------------------------------------------------------


def test_ca_is_a_p256_ca_with_the_right_extensions() -> None:
    cert_pem, key_pem = pki.make_ca("Test CA", days=100)
    assert cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    ca = _cert(cert_pem)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test CA"
    assert ca.subject == ca.issuer
    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical and isinstance(bc.value, x509.BasicConstraints) and bc.value.ca is True
    ku = _ext(ca, x509.KeyUsage).value
    assert isinstance(ku, x509.KeyUsage) and ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    _ext(ca, x509.SubjectKeyIdentifier)
    pub = ca.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    assert ca.signature_hash_algorithm is not None and ca.signature_hash_algorithm.name == "sha256"
    ca.verify_directly_issued_by(ca)  # self-signed
    assert _spki(pub) == _key_spki(key_pem)
    life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=100) <= life <= timedelta(days=100, minutes=6)


# --- make_server_cert ------------------------------------------------------------------------------


def test_server_cert_extensions(base: pki.Material) -> None:
    ca, leaf = _cert(base.ca_pem), _cert(base.cert_pem)
    leaf.verify_directly_issued_by(ca)
    san = _ext(leaf, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == [DNS]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(IP)]
    eku = _ext(leaf, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage) and list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = _ext(leaf, x509.BasicConstraints)
    assert bc.critical and isinstance(bc.value, x509.BasicConstraints) and bc.value.ca is False
    aki = _ext(leaf, x509.AuthorityKeyIdentifier).value
    ca_ski = _ext(ca, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier) and isinstance(ca_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.digest
    _ext(leaf, x509.SubjectKeyIdentifier)
    assert leaf.signature_hash_algorithm is not None and leaf.signature_hash_algorithm.name == "sha256"
    assert _spki(leaf.public_key()) == _key_spki(base.key_pem)
    assert base.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    life = leaf.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=824) < life <= timedelta(days=825)


def test_strict_rfc5280_verifier_accepts_the_cert(base: pki.Material) -> None:
    # cryptography's own verifier is stricter than OpenSSL about the profile (AKI, EKU, ...).
    store = Store([_cert(base.ca_pem)])
    builder = PolicyBuilder().store(store).time(datetime.now(UTC))
    for name in (x509.DNSName(DNS), x509.IPAddress(ipaddress.ip_address(IP))):
        chain = builder.build_server_verifier(name).verify(_cert(base.cert_pem), [])
        assert len(chain) == 2
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("other.voiceai.internal")).verify(_cert(base.cert_pem), [])


def test_server_cert_dates_and_key_reuse(base: pki.Material) -> None:
    nb = datetime(2030, 1, 1, tzinfo=UTC)
    na = datetime(2030, 2, 1)  # naive = UTC
    cert_pem, key_pem = pki.make_server_cert(
        base.ca_pem,
        base.ca_key_pem,
        ["a.example.internal"],
        not_before=nb,
        not_after=na,
        key_pem=base.key_pem,
    )
    leaf = _cert(cert_pem)
    assert leaf.not_valid_before_utc == nb
    assert leaf.not_valid_after_utc == na.replace(tzinfo=UTC)
    assert _key_spki(key_pem) == _key_spki(base.key_pem)  # the given key was reused
    assert _spki(leaf.public_key()) == _key_spki(base.key_pem)
    _, fresh = pki.make_server_cert(base.ca_pem, base.ca_key_pem, ["a.example.internal"])
    assert _key_spki(fresh) != _key_spki(base.key_pem)


def test_server_cert_ip_only(base: pki.Material) -> None:
    cert_pem, _ = pki.make_server_cert(base.ca_pem, base.ca_key_pem, [], ["127.0.0.10", "::1"])
    san = _ext(_cert(cert_pem), x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.10", "::1"]


def test_server_cert_rejects_bad_arguments(base: pki.Material) -> None:
    with pytest.raises(ValueError, match="at least one"):
        pki.make_server_cert(base.ca_pem, base.ca_key_pem, [])
    with pytest.raises(TypeError):
        pki.make_server_cert(base.ca_pem, base.ca_key_pem, DNS)
    with pytest.raises(ValueError, match="does not belong"):
        pki.make_server_cert(base.ca_pem, base.key_pem, [DNS])
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="must be after"):
        pki.make_server_cert(base.ca_pem, base.ca_key_pem, [DNS], not_before=now, not_after=now)
    with pytest.raises(ValueError):
        pki.make_server_cert(base.ca_pem, base.ca_key_pem, [DNS], ["not-an-ip"])


def test_make_material_days() -> None:
    m = pki.make_material("x.example.internal", days=30)
    left = _cert(m.cert_pem).not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=29) < left <= timedelta(days=30)
    assert _cert(m.ca_pem).subject == _cert(m.cert_pem).issuer
    assert b"BEGIN" not in repr(m).encode() and "Material(" in repr(m)


# --- variants --------------------------------------------------------------------------------------


def test_variant_good_is_a_rotation(base: pki.Material) -> None:
    g = pki.variant("good", base, DNS)
    assert g.ca_pem == base.ca_pem and g.ca_key_pem == base.ca_key_pem
    assert g.cert_pem != base.cert_pem and g.key_pem != base.key_pem
    leaf = _cert(g.cert_pem)
    leaf.verify_directly_issued_by(_cert(base.ca_pem))
    san = _ext(leaf, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == [DNS]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == [IP]  # base IPs kept
    assert _spki(leaf.public_key()) == _key_spki(g.key_pem)


def test_variant_bad_san(base: pki.Material) -> None:
    v = pki.variant("bad-san", base, DNS)
    san = _ext(_cert(v.cert_pem), x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["wrong.invalid"]
    assert san.get_values_for_type(x509.IPAddress) == []
    assert v.ca_pem == base.ca_pem and v.key_pem == base.key_pem


def test_variant_expired_and_expiring_soon(base: pki.Material) -> None:
    now = datetime.now(UTC)
    exp = _cert(pki.variant("expired", base, DNS).cert_pem)
    assert exp.not_valid_before_utc < exp.not_valid_after_utc < now
    soon = _cert(pki.variant("expiring-soon", base, DNS).cert_pem)
    assert timedelta(days=9) < soon.not_valid_after_utc - now <= timedelta(days=10)
    assert soon.not_valid_before_utc < now


def test_variant_wrong_ca(base: pki.Material) -> None:
    v = pki.variant("wrong-ca", base, DNS)
    assert v.cert_pem == base.cert_pem and v.key_pem == base.key_pem
    assert v.ca_pem != base.ca_pem
    other = _cert(v.ca_pem)
    assert other.subject == _cert(base.ca_pem).subject  # same name, different key
    with pytest.raises(Exception):  # noqa: B017 - InvalidSignature or ValueError
        _cert(v.cert_pem).verify_directly_issued_by(other)
    assert _spki(other.public_key()) == _key_spki(v.ca_key_pem)  # its own key stays consistent


def test_variant_key_mismatch(base: pki.Material) -> None:
    v = pki.variant("key-mismatch", base, DNS)
    assert v.cert_pem == base.cert_pem and v.ca_pem == base.ca_pem
    assert _key_spki(v.key_pem) != _spki(_cert(v.cert_pem).public_key())
    assert v.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_variant_unknown(base: pki.Material) -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        pki.variant("nope", base, DNS)


# --- b64 and files ---------------------------------------------------------------------------------


def test_b64_roundtrip(base: pki.Material) -> None:
    s = pki.b64(base.cert_pem)
    assert "\n" not in s
    assert base64.b64decode(s, validate=True) == base.cert_pem


def test_write_material_files_and_modes(base: pki.Material, tmp_path: Path) -> None:
    d = tmp_path / "a" / "b"
    (tmp_path / "a").mkdir()
    pki.write_material(base, d)
    assert (d / "ca.crt").read_bytes() == base.ca_pem
    assert (d / "server.crt").read_bytes() == base.cert_pem
    assert (d / "server.key").read_bytes() == base.key_pem
    assert stat.S_IMODE((d / "server.key").stat().st_mode) == 0o600
    # Rewriting over a key file that had become world-readable leaves it 0600 again.
    (d / "server.key").chmod(0o644)
    g = pki.variant("good", base, DNS)
    pki.write_material(g, d)
    assert (d / "server.key").read_bytes() == g.key_pem
    assert stat.S_IMODE((d / "server.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "server.crt", "server.key"]


# --- what OpenSSL (via Python's ssl) does with them ------------------------------------------------


def test_tls_handshake_good_verifies_name_and_ip(base: pki.Material, tmp_path: Path) -> None:
    der = handshake(base, DNS, tmp_path)
    assert der == _cert(base.cert_pem).public_bytes(serialization.Encoding.DER)
    handshake(base, IP, tmp_path)
    handshake(pki.variant("good", base, DNS), DNS, tmp_path)
    handshake(pki.variant("expiring-soon", base, DNS), DNS, tmp_path)


def test_tls_handshake_rejects_other_name(base: pki.Material, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        handshake(base, "other.voiceai.internal", tmp_path)
    assert "Hostname mismatch" in str(e.value) or "hostname" in str(e.value).lower()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("bad-san", "mismatch"),
        ("expired", "expired"),
        ("wrong-ca", "unable to get local issuer"),
    ],
)
def test_tls_handshake_rejects_broken_variants(base: pki.Material, tmp_path: Path, kind: str, reason: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        handshake(pki.variant(kind, base, DNS), DNS, tmp_path)
    assert reason in str(e.value).lower()


def test_key_mismatch_is_refused_at_load(base: pki.Material, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLError, match=r"KEY_VALUES_MISMATCH|key values mismatch"):
        handshake(pki.variant("key-mismatch", base, DNS), DNS, tmp_path)
