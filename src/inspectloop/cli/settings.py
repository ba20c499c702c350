"""Configuration on the command line, with the config class as its one source of truth.

A command that builds a config object (``TrainConfig``, ``ServiceConfig``) takes ``--set KEY=VALUE``
(repeatable) for any of the class's fields, plus a few explicit options for the most-used ones. The
names, types, defaults and help texts are read from the class itself: nothing is copied here, so a
field added to the class is settable at once and a default changed there is the default here.

Values are converted to the field's type (``--set epochs=30``, ``--set flips=false``,
``--set recall_targets=scratch:0.99,pit:0.97``, ``--set cameras=cam1,cam2``, ``--set model_file=none``)
and then validated by the class, so its own limits apply. A key that names no field is refused with
the valid ones; a value that is not of the field's type names the field, the type and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from typer.core import TyperCommand

from inspectloop.errors import InspectloopError

SetOption = Annotated[list[str], typer.Option(
    "--set", metavar="KEY=VALUE", show_default=False,
    help="Set any of the settings listed below (repeatable).")]
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


@dataclass(frozen=True)
class ConfigField:
    """One settable field of a config class."""

    name: str
    annotation: Any
    default: Any
    help: str

    @property
    def expected(self) -> str:
        """The field's type in words: ``an integer``, ``one of 'pac', 'marginal'``."""
        return _expected(self.annotation)

    @property
    def default_text(self) -> str:
        return _show(self.default)


def config_fields(config: type) -> dict[str, ConfigField]:
    """The fields of a pydantic model or a dataclass, in declaration order.

    A dataclass field's help is its ``metadata["help"]``; a pydantic field's is its description.
    """
    if isinstance(config, type) and issubclass(config, BaseModel):
        return {name: ConfigField(name, info.annotation, info.get_default(call_default_factory=True), info.description or "")
                for name, info in config.model_fields.items()}
    hints = typing.get_type_hints(config)
    out = {}
    for f in dataclasses.fields(config):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[f.name] = ConfigField(f.name, hints[f.name], default, str(f.metadata.get("help", "")))
    return out


@dataclass(frozen=True)
class ConfigOptions:
    """How one command surfaces a config class: ``--set`` for every field and explicit options for a few.

    ``load`` returns the class (imported only when needed, so that a heavy module does not slow every
    command); ``options`` maps each explicit option's parameter name to the field it sets; ``error``
    is the typed error a bad setting raises.
    """

    load: Callable[[], type]
    options: Mapping[str, str]
    error: type[InspectloopError]

    def build(self, settings: Sequence[str], **given: Any) -> Any:
        """The config object from ``--set`` pairs and the explicit options (``None``: not given)."""
        config = self.load()
        fields = config_fields(config)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for parameter, value in given.items():
            if value is not None:
                name = self.options[parameter]
                values[name], sources[name] = value, f"--{parameter.replace('_', '-')}"
        for pair in settings:
            name, value, source = self._parse(pair, fields)
            if name in sources:
                raise self.error(f"{name} is given twice ({sources[name]} and {source})", "give it once")
            values[name], sources[name] = value, source
        try:
            return config(**values)
        except ValidationError as exc:
            raise self._invalid(exc, fields, values, sources) from None

    def command_class(self) -> type[TyperCommand]:
        """A Typer command class whose help lists every field with its default, read from the class."""
        surface = self

        class SettingsCommand(TyperCommand):
            def format_help(self, ctx: Any, formatter: Any) -> None:
                fields = config_fields(surface.load())
                for param in self.params:
                    field = fields.get(surface.options.get(param.name or "", ""))
                    if field is not None:  # an explicit option: its help and default are the field's
                        param.help = field.help  # type: ignore[attr-defined]
                        param.default, param.show_default = field.default, True  # shown only: help exits
                self.epilog = settings_help(fields)
                super().format_help(ctx, formatter)

        return SettingsCommand

    def _parse(self, pair: str, fields: Mapping[str, ConfigField]) -> tuple[str, Any, str]:
        key, sep, text = pair.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not name:
            raise self.error(f"bad --set {pair!r}: write KEY=VALUE", "e.g. --set epochs=30 (see --help)")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            raise self.error(f"--set {pair}: {name!r} is not a setting{f' (did you mean {close[0]}?)' if close else ''};"
                             f" the settings are: {', '.join(fields)}", "see --help for each one's meaning and default")
        field = fields[name]
        try:
            value = _convert(field.annotation, text.strip())
        except (ValidationError, ValueError):
            raise self.error(f"bad --set {pair}: {name} expects {field.expected}, got {text.strip()!r}",
                             f"e.g. --set {name}={_example(field)}") from None
        return name, value, f"--set {pair}"

    def _invalid(self, exc: ValidationError, fields: Mapping[str, ConfigField], values: Mapping[str, Any],
                 sources: Mapping[str, str]) -> InspectloopError:
        error = exc.errors()[0]
        if not error["loc"]:  # a check across settings (the config's model validator): its own sentence says why
            reason = error["msg"].removeprefix("Value error, ")
            given = ", ".join(sources[n] for n in values if n in sources and sources[n].startswith("--"))
            return self.error(f"these settings do not go together{f' ({given})' if given else ''}: {reason}",
                              "change one of them; see --help")
        name = str(error["loc"][0])
        field, kind = fields.get(name), str(error["type"])
        expected = field.expected if field else "a valid value"
        if kind in _BOUNDS:
            what = f"must be {_BOUNDS[kind]} {next(iter((error.get('ctx') or {}).values()))} ({expected})"
        elif kind == "literal_error" or kind.endswith(("_type", "_parsing")):
            what = f"expects {expected}"
        elif kind == "value_error":  # a field's own check: its sentence names the rule
            what = str(error["msg"]).removeprefix("Value error, ").removeprefix(f"{name} ")
        else:
            what = str(error["msg"]).lower()
        return self.error(f"bad {sources.get(name, name)}: {name} {what}, got {_shown(values.get(name))}",
                          f"default: {field.default_text}; see --help" if field else "see --help")


def settings_help(fields: Mapping[str, ConfigField]) -> str:
    """The help epilog: every field as ``KEY=DEFAULT  what it does``, one per paragraph."""
    lines = [f"{f.name}={f.default_text}  {f.help}".rstrip() for f in fields.values()]
    return "Settings for --set KEY=VALUE, with their defaults:\n\n" + "\n\n".join(lines)


def _shown(value: Any) -> str:
    """A setting's value as it is typed after ``--set KEY=``: ``10,4`` for a sequence."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return repr(value)


# -- converting -----------------------------------------------------------------------------------

def _convert(annotation: Any, text: str) -> Any:
    """``text`` as a value of ``annotation``: ``none`` for None where allowed; containers from commas or JSON."""
    inner, optional = _unwrap_optional(annotation)
    if optional and text.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(inner)
    if origin is dict:
        raw = json.loads(text) if text.startswith("{") else dict(_pair(item) for item in _items(text))
        return TypeAdapter(inner).validate_python(raw)
    if origin in (list, tuple):
        raw = json.loads(text) if text.startswith("[") else _items(text)
        return TypeAdapter(inner).validate_python(raw)
    return TypeAdapter(inner).validate_strings(text)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.replace("=", ":", 1).partition(":")
    if not sep:
        raise ValueError(f"{item!r} is not KEY:VALUE")
    return key.strip(), value.strip()


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _expected(annotation: Any) -> str:
    inner, optional = _unwrap_optional(annotation)
    origin, args = typing.get_origin(inner), typing.get_args(inner)
    if origin is Literal:
        words = "one of " + ", ".join(repr(a) for a in args)
    elif origin is dict:
        words = f"KEY:VALUE pairs separated by commas, each value {_expected(args[1])}"
    elif origin in (list, tuple):
        words = f"{'integers' if args and args[0] is int else 'values'} separated by commas"
    else:
        words = {bool: "true or false", int: "an integer", float: "a number", str: "text",
                 Path: "a file path"}.get(inner, getattr(inner, "__name__", str(inner)))
    return f"{words} or none" if optional else words


def _example(field: ConfigField) -> str:
    inner, _ = _unwrap_optional(field.annotation)
    origin, args = typing.get_origin(inner), typing.get_args(inner)
    if origin is Literal:
        return str(args[-1])
    if origin is dict:
        return "scratch:0.99,pit:0.97"
    if origin in (list, tuple):  # numbers show their own default (e.g. patch_blocks=4,10); names a made-up pair
        return field.default_text if args and args[0] in (int, float) else "cam1,cam2"
    return field.default_text if field.default is not None else "VALUE"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
