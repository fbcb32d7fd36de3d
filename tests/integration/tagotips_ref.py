"""An independent TagoTiP/S implementation, for interoperability tests.

Written from the specification (TagoTiPs.md, TagoTiP.md) only: it shares no
code with sealpipe's SDK. The AEADs come from python3-cryptography (AES-CCM,
AES-GCM) and python3-nacl (ChaCha20-Poly1305 IETF); the hashes from hashlib.

Its TagoTiP text side reads variable lists (Revision B: parse_variable,
parse_var_list) and Revision D PUSH bodies with §6.4's inheritance
(parse_body, effective).

Not a test itself (ctest runs tests/integration/test_*.py): test_interop.py
and others import it, and `python3 tagotips_ref.py` runs its self-check against the
specification's test vectors.
"""

import hashlib
import hmac
import re
from collections import namedtuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM
from nacl.bindings import (crypto_aead_chacha20poly1305_ietf_decrypt,
                           crypto_aead_chacha20poly1305_ietf_encrypt)
from nacl.exceptions import CryptoError

# TagoTiPs.md §3.1: id -> (name, key bytes, tag bytes, nonce bytes)
Suite = namedtuple("Suite", "id name key_len tag_len nonce_len")
SUITES = {
    0: Suite(0, "aes-128-ccm", 16, 8, 13),
    1: Suite(1, "aes-128-gcm", 16, 16, 12),
    2: Suite(2, "aes-256-ccm", 32, 8, 13),
    3: Suite(3, "aes-256-gcm", 32, 16, 12),
    4: Suite(4, "chacha20-poly1305", 32, 16, 12),
}
SUITE_BY_NAME = {s.name: s for s in SUITES.values()}

# §5.1: method bits 2-0
PUSH, PULL, PING, ACK = 0, 1, 2, 3
METHOD_NAMES = {PUSH: "PUSH", PULL: "PULL", PING: "PING", ACK: "ACK"}

HEADER_LEN = 21
PLAINTEXT_FALLBACK_BYTE = 0x41  # §5.3: 'A' of "ACK|ERR|..." is never a Flags byte


class EnvelopeError(Exception):
    """The bytes are not an envelope this implementation can open."""


def _strip_at(token):
    return token[2:] if token.startswith("at") else token


def auth_hash(token):
    """§2.1: SHA-256 of the token without "at", first 8 bytes."""
    return hashlib.sha256(_strip_at(token).encode("utf-8")).digest()[:8]


def device_hash(serial):
    """§2.2: SHA-256 of the serial, first 8 bytes."""
    return hashlib.sha256(serial.encode("utf-8")).digest()[:8]


def derive_key(token, serial, key_len):
    """§2.4: HMAC-SHA256(key = token hex without "at", msg = serial)[:key_len]."""
    return hmac.new(_strip_at(token).encode("utf-8"), serial.encode("utf-8"),
                    hashlib.sha256).digest()[:key_len]


def make_flags(suite, method, version=0):
    """§5.1: cipher in bits 7-5, version in bits 4-3, method in bits 2-0."""
    return (suite << 5) | (version << 3) | method


def split_flags(flags):
    """(suite, version, method) of a Flags byte."""
    return flags >> 5, (flags >> 3) & 0x3, flags & 0x7


def make_nonce(flags, dev_hash, counter, nonce_len):
    """§3.3: Flags, zero padding, Device Hash[:4], Counter (big-endian)."""
    pad = nonce_len - 1 - 4 - 4
    return bytes([flags]) + b"\0" * pad + dev_hash[:4] + counter.to_bytes(4, "big")


def _aead_encrypt(suite, key, nonce, plaintext, aad):
    s = SUITES[suite]
    if len(key) != s.key_len:
        raise ValueError(f"{s.name} needs a {s.key_len}-byte key, got {len(key)}")
    if s.name.endswith("ccm"):
        return AESCCM(key, tag_length=s.tag_len).encrypt(nonce, plaintext, aad)
    if s.name.endswith("gcm"):
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    return crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)


def _aead_decrypt(suite, key, nonce, ciphertext, aad):
    s = SUITES[suite]
    if len(key) != s.key_len:
        raise EnvelopeError(f"{s.name} needs a {s.key_len}-byte key, got {len(key)}")
    try:
        if s.name.endswith("ccm"):
            return AESCCM(key, tag_length=s.tag_len).decrypt(nonce, ciphertext, aad)
        if s.name.endswith("gcm"):
            return AESGCM(key).decrypt(nonce, ciphertext, aad)
        return crypto_aead_chacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key)
    except (InvalidTag, CryptoError) as e:
        raise EnvelopeError(f"authentication failed ({s.name})") from e


def seal(key, suite, method, counter, auth_hash_bytes, dev_hash, inner, version=0):
    """§6: header (= AAD) || AEAD(inner) || tag. inner is str or bytes."""
    if isinstance(inner, str):
        inner = inner.encode("utf-8")
    flags = make_flags(suite, method, version)
    header = bytes([flags]) + counter.to_bytes(4, "big") + auth_hash_bytes + dev_hash
    assert len(header) == HEADER_LEN
    nonce = make_nonce(flags, dev_hash, counter, SUITES[suite].nonce_len)
    return header + _aead_encrypt(suite, key, nonce, inner, header)


Opened = namedtuple("Opened", "flags suite version method counter auth_hash device_hash inner")


def open_envelope(key, envelope):
    """§7/§12: parses and decrypts an envelope; raises EnvelopeError."""
    envelope = bytes(envelope)
    if len(envelope) < HEADER_LEN:
        raise EnvelopeError(f"{len(envelope)} bytes, shorter than the 21-byte header")
    flags = envelope[0]
    if flags == PLAINTEXT_FALLBACK_BYTE:
        raise EnvelopeError(f"plaintext fallback frame, not an envelope: {envelope!r}")
    suite, version, method = split_flags(flags)
    if suite not in SUITES:
        raise EnvelopeError(f"reserved cipher suite {suite} (flags 0x{flags:02x})")
    if version != 0:
        raise EnvelopeError(f"unsupported version {version} (flags 0x{flags:02x})")
    if method not in METHOD_NAMES:
        raise EnvelopeError(f"reserved method {method} (flags 0x{flags:02x})")
    s = SUITES[suite]
    if len(envelope) < HEADER_LEN + s.tag_len:
        raise EnvelopeError(f"{len(envelope)} bytes, shorter than header + {s.tag_len}-byte tag")
    header = envelope[:HEADER_LEN]
    counter = int.from_bytes(header[1:5], "big")
    ah, dh = header[5:13], header[13:21]
    nonce = make_nonce(flags, dh, counter, s.nonce_len)
    inner = _aead_decrypt(suite, key, nonce, envelope[HEADER_LEN:], header)
    return Opened(flags, suite, version, method, counter, ah, dh, inner)


# ---- TagoTiP text (TagoTiP.md §4.4, §6.3, §12.2) -----------------------------

def unescape(s):
    """§4.4: backslash escapes the next character; \\n is a newline."""
    out, i = [], 0
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            if i + 1 >= len(s):
                raise ValueError(f"dangling backslash in {s!r}")
            nxt = s[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def split_unescaped(s, sep, maxsplit=-1):
    """Splits s at sep where sep is not escaped by a backslash."""
    parts, cur, i = [], [], 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _take_until(s, i, stops):
    """Raw text from i up to the first unescaped char in stops; (text, index)."""
    j = i
    while j < len(s) and s[j] not in stops:
        j += 2 if s[j] == "\\" else 1
    return s[i:j], j


_NAMECHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _number(text):
    if not re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", text):
        raise ValueError(f"not a TagoTiP number: {text!r}")
    return float(text)


def parse_metadata(raw):
    """'k=v,k2=v2' (no braces) -> dict, values unescaped."""
    meta = {}
    for pair in split_unescaped(raw, ","):
        k, sep, v = pair.partition("=")
        if not sep or not k or not v or set(k) - _NAMECHARS:
            raise ValueError(f"bad metadata pair {pair!r}")
        meta[k] = unescape(v)
    return meta


def _coords(raw):
    """'lat,lng[,alt]' -> (lat, lng, alt|None), each in the number format (§6.3.1)."""
    coords = raw.split(",")
    if len(coords) not in (2, 3):
        raise ValueError(f"bad location {raw!r}")
    c = [_number(x) for x in coords]
    return (c[0], c[1], c[2] if len(c) == 3 else None)


def _parse_var(text, rev_d):
    """One variable; with rev_d, Revision D's "@=lat,lng[,alt]" suffix between
    #unit and @timestamp (§6.3.2) is read into "location" (None without)."""
    i = 0
    while i < len(text) and text[i] in _NAMECHARS:
        i += 1
    name = text[:i]
    if not name:
        raise ValueError(f"no variable name in {text!r}")
    for op, typ in ((":=", "number"), ("?=", "boolean"), ("@=", "location"), ("=", "string")):
        if text.startswith(op, i):
            i += len(op)
            break
    else:
        raise ValueError(f"no operator after {name!r} in {text!r}")
    raw, i = _take_until(text, i, "#@^{")
    if typ == "number":
        value = _number(raw)
    elif typ == "boolean":
        if raw not in ("true", "false"):
            raise ValueError(f"bad boolean {raw!r}")
        value = raw == "true"
    elif typ == "location":
        value = _coords(raw)
    else:
        value = unescape(raw)
        if not value:
            raise ValueError(f"empty string value in {text!r}")
    var = {"name": name, "type": typ, "value": value, "unit": None, "time": None,
           "group": None, "metadata": None}
    if i < len(text) and text[i] == "#":
        if typ == "location":
            raise ValueError(f"unit on a location in {text!r}")
        var["unit"], i = _take_until(text, i + 1, "@^{")
    if rev_d:
        var["location"] = None
        if text.startswith("@=", i):
            if typ == "location":
                raise ValueError(f"location suffix on a location in {text!r}")
            raw, i = _take_until(text, i + 2, "@^{")
            var["location"] = _coords(raw)
    if i < len(text) and text[i] == "@":
        ts, i = _take_until(text, i + 1, "^{")
        if not ts.isdigit():
            raise ValueError(f"bad timestamp {ts!r}")
        var["time"] = int(ts)
    if i < len(text) and text[i] == "^":
        var["group"], i = _take_until(text, i + 1, "{")
    if i < len(text) and text[i] == "{":
        raw, j = _take_until(text, i + 1, "}")
        if j >= len(text) or j != len(text) - 1:
            raise ValueError(f"metadata block not closed at the end of {text!r}")
        var["metadata"] = parse_metadata(raw)
        i = j + 1
    if i != len(text):
        raise ValueError(f"unexpected {text[i:]!r} in {text!r}")
    return var


def parse_variable(text):
    """One variable (§6.3, Revision B) -> dict(name, type, value, unit, time,
    group, metadata). type is number|string|boolean|location; a location's
    value is (lat, lng, alt|None)."""
    return _parse_var(text, rev_d=False)


def parse_var_list(text):
    """'[var;var;...]' (a PULL response's detail, §7.2, Revision B) -> list of
    parse_variable()'s dicts."""
    return [parse_variable(v) for v in _split_var_list(text)]


def _split_var_list(text):
    """The variables of '[var;var;...]', raw."""
    if not (text.startswith("[") and text.endswith("]")) or text.endswith("\\]"):
        raise ValueError(f"not a bracketed variable list: {text!r}")
    inner = text[1:-1]
    if not inner:
        raise ValueError("empty variable list")
    return split_unescaped(inner, ";")


# Body-level modifiers in Revision D's order (§6.2) and Revision B's.
_BODY_ORDER_D = ("location", "time", "group", "metadata")
_BODY_ORDER_B = ("group", "time", "metadata")


def _in_order(kinds, order):
    pos = [order.index(k) for k in kinds if k in order]
    return len(pos) == len(kinds) and pos == sorted(pos)


def parse_body(text):
    """A structured PUSH body, Revision D (§6.1-§6.4, §12.2, §14) ->
    (body_mods, [variables]). body_mods: dict(location, time, group, metadata),
    each None when absent; the body-level order is @=LOCATION @TIMESTAMP
    ^GROUP {METADATA} (Revision B's ^GROUP @TIMESTAMP {METADATA} is read too),
    each at most once. A variable is parse_variable()'s dict plus "location":
    its own "@=lat,lng[,alt]" suffix or None. Nothing is inherited here: see
    effective(). Passthrough bodies (">x", ">b") are not read."""
    if text.startswith(">"):
        raise ValueError(f"passthrough body, not a structured one: {text!r}")
    mods = {"location": None, "time": None, "group": None, "metadata": None}
    kinds, i = [], 0
    while i < len(text) and text[i] != "[":
        if text.startswith("@=", i):
            kind = "location"
            raw, i = _take_until(text, i + 2, "@^{[")
            val = _coords(raw)
        elif text[i] == "@":
            kind = "time"
            raw, i = _take_until(text, i + 1, "@^{[")
            if not raw.isdigit():
                raise ValueError(f"bad body timestamp {raw!r}")
            val = int(raw)
        elif text[i] == "^":
            kind = "group"
            val, i = _take_until(text, i + 1, "@^{[")
            if not val or set(val) - _NAMECHARS:
                raise ValueError(f"bad body group {val!r}")
        elif text[i] == "{":
            kind = "metadata"
            raw, i = _take_until(text, i + 1, "}")
            if i >= len(text):
                raise ValueError(f"body metadata not closed in {text!r}")
            val = parse_metadata(raw)
            i += 1
        else:
            raise ValueError(f"unexpected {text[i:]!r} before the variables in {text!r}")
        if kind in kinds:
            raise ValueError(f"body-level {kind} twice in {text!r}")
        kinds.append(kind)
        mods[kind] = val
    if not (_in_order(kinds, _BODY_ORDER_D) or _in_order(kinds, _BODY_ORDER_B)):
        raise ValueError(f"body-level modifiers out of order ({', '.join(kinds)}) in {text!r}")
    return mods, [_parse_var(v, rev_d=True) for v in _split_var_list(text[i:])]


def effective(body):
    """The variables of parse_body()'s (body_mods, variables) as stored (§6.4):
    a variable's own time and group replace the body's; its own "@=" suffix
    replaces the body's location, and a variable of the @= operator never
    takes the body's: its location is its value; metadata is the body's
    merged with the variable's, the variable's keys winning (None when
    neither has any). Returns new dicts; the input is left as it was."""
    mods, variables = body
    out = []
    for v in variables:
        e = dict(v)
        if v["type"] == "location":
            e["location"] = v["value"]
        elif v["location"] is None:
            e["location"] = mods["location"]
        for k in ("time", "group"):
            if e[k] is None:
                e[k] = mods[k]
        if mods["metadata"] or v["metadata"]:
            e["metadata"] = dict(mods["metadata"] or {}, **(v["metadata"] or {}))
        out.append(e)
    return out


# ---- self-check against the specification ----------------------------------

SPEC_TOKEN = "ate2bd319014b24e0a8aca9f00aea4c0d0"
SPEC_SERIAL = "sensor-01"
SPEC_KEY = bytes.fromhex("fe09da81bc4400ee12ab56cd78ef9012")
# TagoTiPs.md §11.1, "Complete envelope (49 bytes)", as listed there.
SPEC_ENVELOPE = bytes.fromhex(
    "00 00 00 00 2a 4d ee dd 7b ab 88 17 ec ab 77 88"
    "d2 2e b7 37 2f c8 c5 aa 56 d7 55 58 2b ac ea 13"
    "bb 57 24 93 bb 8c b1 08 03 cf 82 6f db 83 3b 79"
    "c6")
SPEC_DERIVED = bytes.fromhex(
    "e505f03cc9e93fdbcc382844cca3e17fdf0bb31318585395ceaaa39a5d141964")


def self_check():
    """[(ok, description)] for the spec's test vectors (TagoTiPs.md §2, §11.1)."""
    out = []
    ah, dh = auth_hash(SPEC_TOKEN), device_hash(SPEC_SERIAL)
    out.append((ah.hex() == "4deedd7bab8817ec", f"§2.1 auth hash {ah.hex()}"))
    out.append((dh.hex() == "ab7788d22eb7372f", f"§2.2 device hash {dh.hex()}"))
    dk = derive_key(SPEC_TOKEN, SPEC_SERIAL, 32)
    out.append((dk == SPEC_DERIVED, f"§2.4 derived key {dk.hex()}"))
    out.append((derive_key(SPEC_TOKEN, SPEC_SERIAL, 16) == SPEC_DERIVED[:16],
                "§2.4 derived AES-128 key is the first 16 bytes"))
    nonce = make_nonce(0x00, dh, 42, 13)
    out.append((nonce.hex() == "0000000000ab7788d20000002a", f"§11.1 nonce {nonce.hex()}"))
    env = seal(SPEC_KEY, 0, PUSH, 42, ah, dh, "sensor-01|[temp:=32]")
    out.append((env == SPEC_ENVELOPE,
                f"§11.1 envelope byte for byte (got {env.hex()}, want {SPEC_ENVELOPE.hex()})"))
    o = open_envelope(SPEC_KEY, SPEC_ENVELOPE)
    out.append(((o.flags, o.counter, o.auth_hash, o.device_hash, o.inner) ==
                (0, 42, ah, dh, b"sensor-01|[temp:=32]"), "§11.1 envelope opens back"))
    nonce = make_nonce(0x80, dh, 1, 12)
    out.append((nonce.hex() == "80000000ab7788d200000001", f"§11.3 ChaCha nonce {nonce.hex()}"))
    for s in SUITES.values():
        key = bytes(range(s.key_len))
        env = seal(key, s.id, PUSH, 7, ah, dh, "sensor-01|[temp:=32]")
        ok = len(env) == HEADER_LEN + 20 + s.tag_len and \
            open_envelope(key, env).inner == b"sensor-01|[temp:=32]"
        tampered = bytearray(env)
        tampered[1] ^= 1  # the counter is authenticated (AAD)
        try:
            open_envelope(key, bytes(tampered))
            ok = False
        except EnvelopeError:
            pass
        out.append((ok, f"{s.name}: {HEADER_LEN} + 20 + {s.tag_len} bytes, opens, "
                        "a changed header fails"))
    v = parse_var_list(r"[temperature:=32#F@1694567890000;note=a\;b\,c\nd{k=x\,y};"
                       r"pos@=39.74,-104.99,305^g1;on?=true]")
    out.append((v == [
        {"name": "temperature", "type": "number", "value": 32.0, "unit": "F",
         "time": 1694567890000, "group": None, "metadata": None},
        {"name": "note", "type": "string", "value": "a;b,c\nd", "unit": None, "time": None,
         "group": None, "metadata": {"k": "x,y"}},
        {"name": "pos", "type": "location", "value": (39.74, -104.99, 305.0), "unit": None,
         "time": None, "group": "g1", "metadata": None},
        {"name": "on", "type": "boolean", "value": True, "unit": None, "time": None,
         "group": None, "metadata": None}], "TagoTiP variable-list parser"))
    out += _self_check_body()
    return out


def _eff(body, *fields):
    """effective(parse_body(body)) as tuples of fields."""
    return [tuple(v[f] for f in fields) for v in effective(parse_body(body))]


def _self_check_body():
    """parse_body() and effective() on TagoTiP.md's Revision D examples."""
    out = []
    loc, ts = (39.74, -104.99, None), 1694567890000
    f = ("name", "value", "unit", "location", "time", "group", "metadata")
    for body in ("@=39.74,-104.99@1694567890000^batch_42{firmware=2.1}[temp:=32#C;humidity:=65#%]",
                 "^batch_42@1694567890000{firmware=2.1}[temp:=32#C;humidity:=65#%]"):
        want_loc = loc if body.startswith("@=") else None
        got = _eff(body, *f)
        out.append((got == [
            ("temp", 32.0, "C", want_loc, ts, "batch_42", {"firmware": "2.1"}),
            ("humidity", 65.0, "%", want_loc, ts, "batch_42", {"firmware": "2.1"})],
            f"§6.4 every body-level modifier inherited: {body} -> {got}"))
    got = _eff("@=39.74,-104.99@1694567890000[temp:=32@=39.75,-105.00@1694567891000;humidity:=65]",
               *f)
    out.append((got == [("temp", 32.0, None, (39.75, -105.0, None), ts + 1000, None, None),
                        ("humidity", 65.0, None, loc, ts, None, None)],
                f"§6.4 a variable's own location and time replace the body's: {got}"))
    got = _eff("{firmware=2.1}[temp:=32{source=dht22};humidity:=65]", "name", "metadata")
    out.append((got == [("temp", {"firmware": "2.1", "source": "dht22"}),
                        ("humidity", {"firmware": "2.1"})], f"§6.4 metadata merged: {got}"))
    got = _eff("{a=1,b=2}[t:=1{b=3}]", "metadata")
    out.append((got == [({"a": "1", "b": "3"},)], f"§6.4 the variable's key wins: {got}"))
    got = _eff("@=1,2[position@=39.74,-104.99,305;speed:=10#km/h@=39.74,-104.99,305@1694567890000;"
               "on?=true]", "name", "type", "unit", "location", "time")
    out.append((got == [("position", "location", None, (39.74, -104.99, 305.0), None),
                        ("speed", "number", "km/h", (39.74, -104.99, 305.0), ts),
                        ("on", "boolean", None, (1.0, 2.0, None), None)],
                f"§6.4 an @= variable's location is its value, never the body's: {got}"))
    full = "temperature:=32.5#C@=39.74,-104.99@1694567890000^reading_001{source=dht22,quality=high}"
    mods, vs = parse_body(f"[{full}]")
    out.append((all(v is None for v in mods.values()) and vs == [
        {"name": "temperature", "type": "number", "value": 32.5, "unit": "C", "location": loc,
         "time": ts, "group": "reading_001",
         "metadata": {"source": "dht22", "quality": "high"}}], f"§6.3.3 full variable form: {vs}"))
    out.append((parse_body("[temp:=32]")[1][0] == dict(parse_variable("temp:=32"), location=None),
                "parse_body's variables are parse_variable()'s plus location"))
    for bad in ("[pos@=1,2@=3,4]", "[pos@=1,2#m]", "[t:=1@=1,2#C]", "[t:=1@=1]", "[t:=1@x]",
                "^g@=1,2[t:=1]", "@=1,2^g@5[t:=1]", "@1@2[t:=1]", "^a^b[t:=1]", "{a=1}^g[t:=1]",
                "@=1,2", "[]", "{}[t:=1]", "@1[t:=1", ">xDEAD"):
        try:
            parse_body(bad)
            out.append((False, f"parse_body rejects {bad!r}"))
        except ValueError:
            out.append((True, f"parse_body rejects {bad!r}"))
    return out


if __name__ == "__main__":
    import sys
    results = self_check()
    for ok, what in results:
        print(("ok   " if ok else "FAIL ") + what)
    sys.exit(0 if all(ok for ok, _ in results) else 1)
