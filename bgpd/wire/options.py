"""What two speakers negotiated, as the codec needs it (GoBGP's MarshallingOption)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bgpd.wire.family import Family


@dataclass(frozen=True, slots=True)
class CodecOptions:
    """Negotiated capabilities that change the wire format.

    `four_octet_as`: AS numbers in AS_PATH/AGGREGATOR are 4 octets (RFC 6793); otherwise
    2-octet with AS4_PATH/AS4_AGGREGATOR carrying the real path.
    `add_path_receive` / `add_path_send`: families whose NLRI items carry a path id inbound /
    outbound (RFC 7911).
    `extended_message`: messages up to 65535 octets (RFC 8654); otherwise 4096.
    """

    four_octet_as: bool = True
    add_path_receive: frozenset[Family] = field(default_factory=frozenset)
    add_path_send: frozenset[Family] = field(default_factory=frozenset)
    extended_message: bool = False

    @property
    def max_message_size(self) -> int:
        return 65535 if self.extended_message else 4096


DEFAULT_OPTIONS = CodecOptions()
"""Options before OPEN is exchanged, and for a peer that negotiated everything standard."""
