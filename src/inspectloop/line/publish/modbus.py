"""Decisions into a PLC's holding registers over Modbus TCP (pymodbus, the ``line`` extra), laid out as the
station config's register map says (:class:`~inspectloop.line.config.ModbusConfig`), ``sequence`` last.

Modbus has no strings and no transactions: every field is a number in 16-bit registers, and the PLC
knows a result is complete when ``sequence`` changes. The sequence continues from the value the PLC
holds when the station starts, so a restart shows the PLC no gap; a failed write uses up no number.
"""

from __future__ import annotations

import logging
import socket
from types import ModuleType, TracebackType
from typing import Any

from inspectloop.errors import PublishError, require
from inspectloop.line.config import ModbusConfig
from inspectloop.line.decision import PartDecision
from inspectloop.line.publish.opcua import DECISION_CODES

log = logging.getLogger(__name__)
NO_CLASS = 0xFFFF  # class_index of a decision without a class (a fail-safe)


def pymodbus_client() -> ModuleType:
    """The ``pymodbus.client`` module (MissingExtraError naming the ``line`` extra when absent)."""
    return require("pymodbus.client", "line", package="pymodbus")


def register_values(config: ModbusConfig, decision: PartDecision, sequence: int) -> dict[int, int]:
    """Register address -> 16-bit value for every configured field of ``decision`` (see ModbusConfig)."""
    counter = decision.frame_counter % 2**32
    words: dict[str, list[int]] = {
        "decision": [DECISION_CODES[decision.decision.value]],
        "class_index": [NO_CLASS if decision.class_index is None else decision.class_index % 2**16],
        "late": [int(decision.late)],
        "frame_counter": [counter >> 16, counter & 0xFFFF],
        "part_id": ascii_registers(decision.part_id, config.part_id_registers),
        "sequence": [sequence % 2**16],
    }
    return {address: word for name, span in config.spans().items() for address, word in zip(span, words[name])}


def ascii_registers(text: str, registers: int) -> list[int]:
    """``text`` as ASCII, two characters per register (first in the high byte), zero-padded; a longer text
    keeps its last ``2 * registers`` characters (where serial numbers differ); non-ASCII becomes ``?``."""
    data = text.encode("ascii", "replace")[-2 * registers:].ljust(2 * registers, b"\0")
    return [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]


def contiguous_runs(values: dict[int, int]) -> list[tuple[int, list[int]]]:
    """(first address, values) for each run of consecutive addresses: one write request per run."""
    runs: list[tuple[int, list[int]]] = []
    for address in sorted(values):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(values[address])
        else:
            runs.append((address, [values[address]]))
    return runs


class ModbusPlcWriter:
    """Writes each decision into the PLC's holding registers. ``start`` connects, reads every configured
    register once (PublishError naming the endpoint or the register and the fix if it cannot) and takes
    up the PLC's sequence; ``publish`` writes the fields, then ``sequence``."""

    def __init__(self, config: ModbusConfig) -> None:
        self.config = config
        self.sequence: int | None = None  # last written; None until read from the PLC at the first start
        self._client: Any = None

    def __enter__(self) -> ModbusPlcWriter:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        """host:port (device id), for messages."""
        return f"{self.config.host}:{self.config.port} (device {self.config.device_id})"

    @property
    def target(self) -> str:
        """Where decisions go, for messages."""
        return f"PLC Modbus TCP {self.endpoint}"

    def start(self) -> None:
        """Connect, check every configured register can be read, and take up the PLC's sequence."""
        client = pymodbus_client().ModbusTcpClient(self.config.host, port=self.config.port,
                                                   timeout=self.config.timeout_s, retries=0)
        if not client.connect():
            client.close()
            why = self._why_unreachable()
            raise PublishError(f"cannot reach the PLC's Modbus TCP server at {self.endpoint}: {why}",
                               "check publish.modbus.host and port, the network, and that the PLC's Modbus TCP "
                               "server is enabled") from None
        self._client = client
        try:
            held = self._read_all()
        except BaseException:
            self.close()
            raise
        if self.sequence is None and "sequence" in self.config.registers:
            self.sequence = held[self.config.registers["sequence"]]

    def publish(self, decision: PartDecision) -> None:
        """Write one decision's registers, ``sequence`` last; PublishError if the PLC does not take them."""
        if self._client is None:
            raise PublishError("the Modbus writer is not started", "call start() first")
        sequence = ((self.sequence or 0) + 1) % 2**16  # taken only once every register is written: no gap
        values = register_values(self.config, decision, sequence)
        last = self.config.registers.get("sequence")
        fields = {address: word for address, word in values.items() if address != last}
        for address, words in contiguous_runs(fields) + ([] if last is None else [(last, [values[last]])]):
            self._request("write_registers", address, words, part=decision.part_id)
        self.sequence = sequence

    def close(self) -> None:
        """Disconnect (safe to call twice)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _read_all(self) -> dict[int, int]:
        """Every configured register's current value (one read per run of consecutive registers)."""
        held: dict[int, int] = {}
        addresses = {a: 0 for span in self.config.spans().values() for a in span}
        for address, words in contiguous_runs(addresses):
            response = self._request("read_holding_registers", address, count=len(words))
            held.update(zip(range(address, address + len(words)), response.registers))
        return held

    def _request(self, method: str, address: int, values: list[int] | None = None, *, count: int = 1,
                 part: str | None = None) -> Any:
        """One Modbus request; PublishError naming the registers and the fix when it fails or is refused."""
        exceptions = require("pymodbus.exceptions", "line", package="pymodbus")
        args: dict[str, Any] = {"device_id": self.config.device_id}
        if values is None:
            args["count"] = count
        try:
            response = getattr(self._client, method)(address, *([] if values is None else [values]), **args)
        except (exceptions.ModbusException, OSError) as exc:
            raise self._failed(address, part, f"{type(exc).__name__}: {exc}") from None
        if response.isError():
            raise self._failed(address, part, f"the PLC answered with Modbus exception {response.exception_code} "
                                              f"({_EXCEPTIONS.get(response.exception_code, 'unknown')})")
        return response

    def _failed(self, address: int, part: str | None, why: str) -> PublishError:
        field = next((name for name, span in self.config.spans().items() if address in span), "?")
        if part is None:
            return PublishError(f"the PLC's Modbus TCP server at {self.endpoint} refused reading holding register "
                                f"{address} (publish.modbus.registers.{field}): {why}",
                                f"fix publish.modbus.registers.{field} (and device_id) to a holding register the "
                                "PLC program declares")
        return PublishError(f"could not write part {part}'s decision to {self.target} (register {address}, "
                            f"{field}): {why}", "check the connection to the PLC; decisions wait in the outbox "
                                                "and go out in order once it answers")

    def _why_unreachable(self) -> str:
        """The operating system's reason a TCP connection fails (pymodbus only says it did)."""
        try:
            with socket.create_connection((self.config.host, self.config.port), self.config.timeout_s):
                return "the server accepted TCP but pymodbus could not connect"
        except OSError as exc:
            return exc.strerror or type(exc).__name__


_EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
               6: "server device busy", 10: "gateway path unavailable", 11: "gateway target failed to respond"}
