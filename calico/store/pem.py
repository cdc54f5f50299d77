"""Just enough of PEM and X.509 to say whether a certificate is in its validity period, so an
expired etcd client certificate is named as such before connecting (etcd's refusal reaches a
gRPC client only as a closed connection). Pure: bytes in, values out.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Validity", "certificates", "validity"]

_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
_SEQUENCE, _UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x30, 0x17, 0x18, 0xA0


@dataclass(frozen=True, slots=True)
class Validity:
    not_before: datetime
    not_after: datetime

    def problem(self, now: datetime) -> str | None:
        """Why the certificate is not valid at `now`, or None."""
        if now > self.not_after:
            return f"expired on {self.not_after:%Y-%m-%d %H:%M:%S} UTC"
        if now < self.not_before:
            return f"not valid before {self.not_before:%Y-%m-%d %H:%M:%S} UTC"
        return None


def certificates(pem: bytes) -> list[bytes]:
    """The DER bytes of each CERTIFICATE block in `pem`. Raises ValueError on bad base64."""
    out = []
    for body in _BLOCK.findall(pem):
        try:
            out.append(base64.b64decode(b"".join(body.split()), validate=True))
        except binascii.Error as exc:
            raise ValueError(f"bad base64 in a CERTIFICATE block: {exc}") from None
    return out


def _element(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at `at`."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 0 < count <= 4 or at + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _time(tag: int, text: bytes) -> datetime:
    try:
        raw = text.decode("ascii")
        if tag == _UTC_TIME and len(raw) == 13 and raw.endswith("Z"):
            year = int(raw[:2])
            raw = ("19" if year >= 50 else "20") + raw  # RFC 5280 4.1.2.5.1
        elif not (tag == _GENERALIZED_TIME and len(raw) == 15 and raw.endswith("Z")):
            raise ValueError
        return datetime.strptime(raw, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"bad certificate time {text!r}") from None


def validity(der: bytes) -> Validity:
    """notBefore and notAfter of a DER certificate. Raises ValueError if it is not one."""
    tag, start, _ = _element(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, at, end = _element(der, start)  # tbsCertificate
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, _, after = _element(der, at)
    if tag == _VERSION:
        at = after
    for _field in ("serialNumber", "signature", "issuer"):
        _, _, at = _element(der, at)
    tag, at, _ = _element(der, at)
    if tag != _SEQUENCE or at >= end:
        raise ValueError("not a certificate")
    times = []
    for _bound in ("notBefore", "notAfter"):
        tag, start, at = _element(der, at)
        times.append(_time(tag, der[start:at]))
    return Validity(times[0], times[1])
