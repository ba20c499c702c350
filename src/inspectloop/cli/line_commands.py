"""``inspectloop line ...``: cameras on this machine, a station's start-up check, a test decision to the PLC;
and ``inspectloop run``, the station itself."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from inspectloop.cli.common import WorkspaceOpt, friendly, out, print_json, table, workspace
from inspectloop.cli.keys_commands import warn_unverified

line_app = typer.Typer(help="On the line: Basler cameras, video sources, and decisions published to the line "
                            "controller (OPC UA, MQTT), from the station's line.yaml.", no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", help="Line config YAML (default: line.yaml in the workspace).")]


def _quiet_protocol_logs() -> None:
    """asyncua logs its security notes as warnings; the check's table already says the link is unencrypted.
    pymodbus logs each failed connection as an error; the Modbus writer's own message (and, while running,
    the outbox's warning) already says so with the fix."""
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _config_path(ws: Path, config: Path | None) -> Path:
    from inspectloop.line.config import LINE_CONFIG_FILE

    return config if config is not None else ws / LINE_CONFIG_FILE


@line_app.command("cameras")
@friendly
def cameras() -> None:
    """List the Basler cameras pylon finds (GigE, USB and emulated), with the serial to put in line.yaml."""
    from inspectloop.line.acquire.basler import list_cameras

    found = list_cameras()
    table("cameras", ["serial", "model", "transport", "name"],
          [[c.serial, c.model, c.device_class, c.friendly_name] for c in found])
    if not found:
        out.print("no camera found: check cables and power (GigE: the network adapter's address; "
                  "PYLON_CAMEMU=N gives N emulated cameras)", highlight=False)


@line_app.command("check")
@friendly
def check(ws: WorkspaceOpt, config: ConfigOpt = None,
          model: Annotated[Optional[Path], typer.Option(help="Model file the frames are for: a pixel format it "
                                                             "cannot use is refused.")] = None) -> None:
    """Start the station once: open every camera with its locked settings and grab a frame, open every video
    source, start every publisher; then stop. Any problem is refused with its fix."""
    from inspectloop.line.config import load_line_config
    from inspectloop.line.station import check_station

    _quiet_protocol_logs()
    results = check_station(load_line_config(_config_path(ws, config)), model=model)
    table("station check", ["kind", "name", "seen"], [[r.kind, r.name, r.detail] for r in results])
    out.print(f"ready: {len(results)} source(s) and publisher(s) started and stopped", highlight=False)


@line_app.command("publish-test")
@friendly
def publish_test(ws: WorkspaceOpt, config: ConfigOpt = None,
                 part_id: Annotated[str, typer.Option(help="Part id to send.")] = "TEST-1",
                 decision: Annotated[str, typer.Option(help="pass, reject or review.")] = "reject",
                 label: Annotated[str, typer.Option(help="Class to send.")] = "test",
                 hold: Annotated[float, typer.Option(help="Seconds the OPC UA server stays up for the PLC to "
                                                          "read the result.")] = 0.0) -> None:
    """Publish one test decision to the configured OPC UA server, PLC (OPC UA or Modbus) and MQTT broker (wiring
    test with the PLC)."""
    from inspectloop.errors import LineConfigError
    from inspectloop.line.config import load_line_config
    from inspectloop.line.decision import PartDecision
    from inspectloop.line.station import publish_once, publishers

    line = load_line_config(_config_path(ws, config))
    if not publishers(line.publish):
        raise LineConfigError("the line config names no publisher", "add publish.opcua, publish.plc, publish.modbus "
                                                                    "or publish.mqtt to it")
    try:
        message = PartDecision(part_id=part_id, decision=decision, label=label, frame_counter=0)
    except ValueError as exc:
        raise LineConfigError(f"bad test decision: {exc}", "decision is pass, reject or review") from None
    _quiet_protocol_logs()
    for where in publish_once(line.publish, message, hold_s=hold):
        out.print(f"sent {message.decision.value} for part {part_id} to {where}", highlight=False)


@friendly
def run(ws: WorkspaceOpt, config: ConfigOpt = None,
        station: Annotated[str, typer.Option(help="Station name: its folder under <workspace>/line/ holds the "
                                                  "decision journal and outbox.")] = "station1",
        parts: Annotated[Optional[int], typer.Option(help="Stop after this many parts (commissioning, tests).")] = None,
        seconds: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
        rate: Annotated[Optional[float], typer.Option(help="Software trigger rate in parts per second (default: "
                                                           "as fast as parts are taken).")] = None,
        model: Annotated[Optional[Path], typer.Option(help="Run this .onnx file instead of the registry's "
                                                           "production version.")] = None,
        shadow: Annotated[Optional[str], typer.Option(help="Shadow this registry version (default: the version "
                                                           "in stage shadow, if any).")] = None,
        trusted_key: Annotated[list[Path], typer.Option(help="Public key (PEM) the model must be signed by "
                                                             "(repeatable).", show_default=False)] = [],  # noqa: B006
        sample_rate: Annotated[Optional[float], typer.Option(help="Share of frames kept for recalibration.")] = None,
        in_flight: Annotated[int, typer.Option(help="Parts inspected at once; a part beyond that is dropped "
                                                    "(it gets the fail-safe, counted).")] = 4,
        collect: Annotated[Optional[bool], typer.Option("--collect/--no-collect", help="Collection mode: store a "
                                                        "sample of parts and every part the existing QC rejects, "
                                                        "as line.yaml's collect section says (default: on when "
                                                        "line.yaml has one).", show_default=False)] = None,
        collect_only: Annotated[bool, typer.Option("--collect-only", help="Collect without a model (a new line's "
                                                   "first weeks): nothing is decided or published.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False) -> None:
    """Run the station from line.yaml: acquire each part, decide it with the production model within its
    deadline (else the fail-safe), publish it to the line (OPC UA, PLC, MQTT) and log it durably; until
    Ctrl-C or SIGTERM, or --parts / --seconds. Decisions a publisher did not take wait in the outbox.
    With a collect section in line.yaml (or --collect-only, without a model) it also stores a sample of parts
    and every part the existing QC rejects (an MQTT message or OPC UA tag) in the workspace."""
    import sys

    from inspectloop.errors import InspectloopError
    from inspectloop.line.config import load_line_config
    from inspectloop.line.run import PartReport, RunOptions, Station, run_station
    from inspectloop.serve.service import ServiceConfig

    options = RunOptions(station=station, parts=parts, seconds=seconds, rate_hz=rate, in_flight=in_flight,
                         collect=collect, collect_only=collect_only)
    chosen = {"model_file": model, "shadow": shadow, "trusted_keys": tuple(trusted_key) or None,
              "sample_rate": sample_rate}
    service = ServiceConfig(**{k: v for k, v in chosen.items() if v is not None})
    every_part = not sys.stdout.isatty()  # a log file gets every part; a terminal the ones not passed

    def started(running: Station) -> None:
        warn_unverified(running.signature_warning())
        out.print(running.describe(), highlight=False, soft_wrap=True)

    def report(part: PartReport) -> None:
        if every_part or part.entry.decision.decision.value != "pass" or part.entry.reason != "model":
            out.print(part.line(), highlight=False, soft_wrap=True)  # one line per part, however long

    _quiet_protocol_logs()
    with workspace(ws) as w:
        line = load_line_config(_config_path(ws, config))
        summary = run_station(w, line, options, service, on_start=None if json_out else started,
                              on_part=None if json_out else report)
    if json_out:
        print_json(summary.to_dict())
    else:
        for text in summary.lines():
            out.print(text, highlight=False, soft_wrap=True)
    if summary.fault:
        raise InspectloopError(f"station stopped: {summary.fault}", summary.fault_fix)
