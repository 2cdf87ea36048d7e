"""Dataclass configs: build from dicts/JSON files with errors that name the bad key and the valid ones."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")
_UNION_TYPES = (typing.Union, types.UnionType)


def _is_optional(tp) -> bool:
    return typing.get_origin(tp) in _UNION_TYPES


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says which and what would be valid."""


def check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


def check_range(name: str, value, lo=None, hi=None, *, lo_open=False) -> None:
    """``value`` in [lo, hi] (``lo_open``: (lo, hi]); NaN and +-inf are always rejected (a NaN compares
    false with every bound, so without this it would pass any range)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{name}={value!r} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name}={value!r} must be <= {hi}")


def _coerce(name: str, tp, value):
    """Convert a JSON/CLI value to the annotated field type (int, float, bool, str, list, Optional)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in _UNION_TYPES:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for tp_i in inner[:-1]:  # e.g. float | str: a number if it parses as one, else the text
            try:
                return _coerce(name, tp_i, value)
            except ConfigError:
                pass
        return _coerce(name, inner[-1], value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} expects a list, got {value!r}")
        return origin(_coerce(name, args[0] if args else str, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{name} expects true/false, got {value!r}")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} expects {tp.__name__}, got {value!r}") from None
    return value


def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error listing the valid keys."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(f"{source}:{k}", hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


MISSING = object()  # a key one side of a config comparison does not have


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every leaf where two nested JSON configs differ, keys in
    order; a side without the key gives :data:`MISSING`. What a resumed run compares with its saved one."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    pairs = ((k, old_flat.get(k, MISSING), new_flat.get(k, MISSING)) for k in sorted(set(old_flat) | set(new_flat)))
    return [(k, a, b) for k, a, b in pairs if a != b]


def load_json_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of key: value pairs")
    return data


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _show_default(value) -> str:
    """A default as it is typed on the command line (lists comma-separated)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def field_help(f: dataclasses.Field, default_text: str | None = None) -> str:
    """A field's help line: ``metadata["help"]``, then its choices and its effective default.

    ``metadata`` keys: ``help`` (what the option does), ``choices`` (the fixed set of valid values) and
    ``default`` (text for a default the dataclass resolves later, e.g. ``"per model (...)"``);
    ``default_text`` overrides both (a command that sets its own default).
    """
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    parts = [f.metadata.get("help", "")]
    tail = []
    if "choices" in f.metadata:
        tail.append("one of: " + ", ".join(map(str, f.metadata["choices"])))
    if default_text is None:
        default_text = f.metadata["default"] if "default" in f.metadata else _show_default(default)
    if default is not False or "default" in f.metadata:  # a switch is off unless given
        tail.append("default: " + default_text)
    if not tail:
        return parts[0]
    parts.append(f"({'; '.join(tail)})")
    return " ".join(p for p in parts if p)


def add_dataclass_options(parser, *classes, skip: tuple[str, ...] = (), defaults: dict[str, str] | None = None) -> None:
    """Add ``--field-name VALUE`` for every field of ``classes`` (values are parsed by ``from_dict``).

    The help of each option is the field's ``metadata`` (see :func:`field_help`; ``defaults`` maps a field
    to the text of a default the command applies itself). A bool field that
    defaults to False is a plain switch (``--resume``); any other bool is ``--name`` / ``--no-name``.
    Defaults are left unset (``None``) so that only options given on the command line
    override a ``--config`` file.
    """
    seen: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in skip or f.name in seen or not f.init or f.name.startswith("_"):
                continue
            seen.add(f.name)
            tp = hints[f.name]
            if _is_optional(tp):
                tp = next(a for a in typing.get_args(tp) if a is not type(None))
            flag = f"--{f.name.replace('_', '-')}"
            helptext = field_help(f, (defaults or {}).get(f.name)).replace("%", "%%")  # argparse %-formats help strings
            if tp is bool:
                if f.default is False:
                    parser.add_argument(flag, dest=f.name, default=None, action="store_true", help=helptext)
                else:
                    parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                        help=helptext)
                continue
            if "choices" in f.metadata:
                parser.add_argument(flag, dest=f.name, default=None, choices=tuple(map(str, f.metadata["choices"])),
                                    help=helptext)
                continue
            origin = typing.get_origin(tp)
            metavar = f.metadata.get("metavar") or (
                f"{typing.get_args(tp)[0].__name__.upper()},..." if origin in (list, tuple) else tp.__name__.upper())
            parser.add_argument(flag, dest=f.name, default=None, metavar=metavar, help=helptext)


def config_file_defaults(parser, path: str | Path) -> None:
    """Make the JSON object in ``path`` the defaults of ``parser``'s options (a command whose options are
    written by hand rather than read from a dataclass): keys are option names with ``_``, options given
    on the command line still win. An unknown key or a value outside an option's choices is an error."""
    values = load_json_config(path)
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(actions))}")
    for key, value in values.items():
        action = actions[key]
        if isinstance(value, list):
            value = values[key] = ",".join(map(str, value))
        if action.choices is not None and value not in action.choices:
            raise ConfigError(f"{path}:{key}={value!r} is not valid; choose one of: {', '.join(action.choices)}")
        action.required = False  # given by the file
    parser.set_defaults(**values)


def build_configs(classes, file_values: dict[str, Any], cli_values: dict[str, Any], *, source: str):
    """Merge a config file's flat keys with CLI overrides and build one instance per class.

    Every key must belong to one of ``classes``; an unknown key is an error listing the valid ones.
    """
    merged = dict(file_values)
    merged.update({k: v for k, v in cli_values.items() if v is not None})
    owners: dict[str, type] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.init:
                owners.setdefault(f.name, cls)
    unknown = sorted(set(merged) - set(owners))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(owners))}")
    return [from_dict(cls, {k: v for k, v in merged.items() if owners[k] is cls}, source=source)
            for cls in classes]
