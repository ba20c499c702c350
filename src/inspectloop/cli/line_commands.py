"""``inspectloop line ...``: cameras on this machine, a station's start-up check, a test decision to the PLC."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from inspectloop.cli.common import WorkspaceOpt, friendly, out, table

line_app = typer.Typer(help="On the line: Basler cameras, video sources, and decisions published to the line "
                            "controller (OPC UA, MQTT), from the station's line.yaml.", no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", help="Line config YAML (default: line.yaml in the workspace).")]


def _quiet_protocol_logs() -> None:
    """asyncua logs its security notes as warnings; the check's table already says the link is unencrypted."""
    logging.getLogger("asyncua").setLevel(logging.ERROR)


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
    """Publish one test decision to the configured OPC UA server, PLC and MQTT broker (wiring test with the PLC)."""
    from inspectloop.errors import LineConfigError
    from inspectloop.line.config import load_line_config
    from inspectloop.line.decision import PartDecision
    from inspectloop.line.station import publish_once

    line = load_line_config(_config_path(ws, config))
    if line.publish.opcua is None and line.publish.plc is None and line.publish.mqtt is None:
        raise LineConfigError("the line config names no publisher", "add publish.opcua, publish.plc or publish.mqtt "
                                                                    "to it")
    try:
        message = PartDecision(part_id=part_id, decision=decision, label=label, frame_counter=0)
    except ValueError as exc:
        raise LineConfigError(f"bad test decision: {exc}", "decision is pass, reject or review") from None
    _quiet_protocol_logs()
    for where in publish_once(line.publish, message, hold_s=hold):
        out.print(f"sent {message.decision.value} for part {part_id} to {where}", highlight=False)
