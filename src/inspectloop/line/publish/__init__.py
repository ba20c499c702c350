"""Decisions out to the line controller: inspectloop as an OPC UA server or a writer into a PLC's OPC UA
server (:mod:`.opcua`), a writer into a PLC's Modbus TCP holding registers (:mod:`.modbus`) and an MQTT
client (:mod:`.mqtt`). Each publisher is checked at ``start`` (endpoint bound, broker reached) so a
station that cannot tell the line its answers refuses to start, with the reason and the fix."""

from __future__ import annotations

from typing import Protocol

from inspectloop.line.decision import PartDecision


class Publisher(Protocol):
    """Where part decisions go: started once, then one ``publish`` per part, then ``close``."""

    @property
    def target(self) -> str:
        """Where this publisher sends, for messages (``OPC UA opc.tcp://...``, ``MQTT host:port topic t``)."""

    def start(self) -> None:
        """Connect or bind; PublishError (reason and fix) when the line cannot be reached."""

    def publish(self, decision: PartDecision) -> None:
        """Send one part's decision; PublishError when it cannot be delivered."""

    def close(self) -> None:
        """Release connections (safe to call twice)."""
