"""Dataclass config trees loaded from TOML, with dotted command-line overrides.

Unknown keys and wrong types are errors that name the dotted key (and the nearest valid key), so a typo
in a config file or on the command line never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import tomli_w

from herd.core.io import atomic_write_text

T = TypeVar("T")

RESOLVED_NAME = "config.resolved.toml"


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass tree (one line, names the key)."""


# ---------------------------------------------------------------- loading


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Read TOML at `path` (optional), apply `key.sub=value` overrides, build and check `cls`."""
    data: dict[str, Any] = read_toml(Path(path)) if path is not None else {}
    apply_overrides(cls, data, overrides)
    return from_dict(cls, data, where=str(path) if path is not None else "")


def apply_overrides(cls: type, data: dict[str, Any], overrides: Sequence[str]) -> None:
    """Set each `a.b=value` in plain `data`, checked against `cls` (errors name the full dotted key)."""
    for text in overrides:
        _apply_override(cls, data, text)


def merge_tables(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base` key by key: tables merge recursively, anything else (arrays too) replaces."""
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        merged[key] = merge_tables(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from plain data; `where` (a file name) prefixes error messages."""
    return _build(cls, data, _Ctx(where, cls), "")


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split `a.b=value`; the value is read as a TOML value, else kept as a bare string."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected key=value, e.g. optim.lr=3e-4")
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw


def _apply_override(cls: type, data: dict[str, Any], text: str) -> None:
    key, value = parse_override(text)
    ctx = _Ctx(f"override {text!r}", cls)
    parts = key.split(".")
    tp = _lookup(cls, parts, ctx)
    # `run.name=2024` or `model.preset=8e3` parse as numbers; a str-typed field wants the text as typed.
    raw = text.partition("=")[2].strip()
    if not isinstance(value, str) and _wants_str(tp):
        value = raw
    _convert(tp, value, ctx, key)  # check now, so the error names the override rather than the file
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ctx.error(f"'{'.'.join(parts[: i + 1])}' is {_got(child)}, not a table")
        node = child
    old = node.get(parts[-1])
    if dataclasses.is_dataclass(_strip_none(tp)) and isinstance(old, dict) and isinstance(value, dict):
        value = merge_tables(old, value)  # a table for a config section sets those keys, keeps the rest
    node[parts[-1]] = value


def _lookup(cls: type, parts: list[str], ctx: _Ctx) -> Any:
    """The declared type at a dotted key; unknown keys raise with a suggestion."""
    tp: Any = cls
    for i, part in enumerate(parts):
        base = _strip_none(tp)
        if dataclasses.is_dataclass(base):
            hints = _hints(base)
            if part not in hints:
                raise _unknown(ctx, parts[:i], part, list(hints))
            tp = hints[part]
        elif get_origin(base) is dict or base is dict:
            tp = get_args(base)[1] if get_args(base) else Any
        elif base is Any:
            return Any
        else:
            where = ".".join(parts[:i])
            raise ctx.error(f"'{where}' is {_type_name(tp)}, not a table; cannot set '{part}'")
    return tp


def _wants_str(tp: Any) -> bool:
    base = _strip_none(tp)
    if base in (str, Path):
        return True
    return get_origin(base) is Literal and all(isinstance(a, str) for a in get_args(base))


def at_least(section: Any, **minimums: float) -> None:
    """For a config section's `__post_init__`: each named field >= its minimum (the error names the field)."""
    for name, low in minimums.items():
        if getattr(section, name) < low:
            raise ValueError(f"{name} must be >= {low:g}, got {getattr(section, name)!r}")


# ---------------------------------------------------------------- building and type checks


@dataclasses.dataclass(frozen=True)
class _Ctx:
    source: str  # file name or override text, prefixed to messages
    root: type  # the top dataclass, searched for "did you mean" across the whole tree

    def error(self, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {msg}" if self.source else msg)


@cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _build(cls: type[T], data: Any, ctx: _Ctx, prefix: str, base: Any = None) -> T:
    """`data` laid over `base` (an instance of `cls`), or over `cls`'s own field defaults."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ctx.error(f"{prefix or '<root>'}: expected a table ({cls.__name__}), got {_got(data)}")
    hints = _hints(cls)
    for key in data:
        if key not in hints:
            raise _unknown(ctx, prefix.split(".") if prefix else [], key, list(hints))
    missing = [
        _dot(prefix, f.name)
        for f in dataclasses.fields(cls)
        if f.init
        and base is None
        and f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ctx.error("missing required field(s) " + ", ".join(repr(m) for m in missing))
    kwargs = {k: _convert_field(cls, k, hints[k], v, ctx, _dot(prefix, k), base) for k, v in data.items()}
    try:
        return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)
    except (TypeError, ValueError) as e:  # __post_init__ checks
        if isinstance(e, ConfigError):
            raise
        raise ctx.error(f"{prefix or cls.__name__}: {e}") from None


def _convert_field(cls: type, name: str, tp: Any, value: Any, ctx: _Ctx, key: str, base: Any) -> Any:
    """A table given in part for a dataclass field keeps the field's own default values.

    `sft: SFTConfig = field(default_factory=lambda: SFTConfig(lr=5e-5, epochs=3))` with `[sft] lr = 1e-4`
    gives epochs=3, not SFTConfig's class default: the table is laid over the field's default instance.
    """
    if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        start = getattr(base, name) if base is not None else _field_default(cls, name)
        if isinstance(start, tp):
            return _build(tp, value, ctx, key, start)
    return _convert(tp, value, ctx, key)


def _field_default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _convert(tp: Any, value: Any, ctx: _Ctx, key: str) -> Any:
    """Check (and lightly coerce: int->float, str->Path, list->tuple) one value against its type."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, ctx, key)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, args, value, ctx, key)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        choices = ", ".join(repr(a) for a in args)
        raise ctx.error(f"{key}: expected one of {choices}, got {_got(value)}")
    if origin in (list, tuple, dict) or tp in (list, tuple, dict):
        return _convert_container(tp, origin or tp, args, value, ctx, key)
    scalar = _convert_scalar(tp, value)
    if scalar is _BAD:
        raise _mismatch(ctx, key, tp, value)
    return scalar


_BAD = object()


def _convert_scalar(tp: Any, value: Any) -> Any:
    if tp is bool:
        return value if isinstance(value, bool) else _BAD
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if tp is float:  # nan and ±inf are never a setting: they slip past every range check
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else _BAD
    if tp is str:
        return value if isinstance(value, str) else _BAD
    if tp is Path:
        return Path(value) if isinstance(value, str | Path) else _BAD
    if isinstance(tp, type):
        return value if isinstance(value, tp) else _BAD
    return value  # an annotation we do not model (e.g. a TypeVar): trust it


def _convert_union(tp: Any, args: tuple, value: Any, ctx: _Ctx, key: str) -> Any:
    if value is None and type(None) in args:
        return None
    rest = [a for a in args if a is not type(None)]
    inner = rest[0]
    if len(rest) == 1 and (dataclasses.is_dataclass(inner) or get_origin(inner) in (list, tuple, dict, Literal)):
        return _convert(inner, value, ctx, key)  # `X | None`: X's own message names the exact bad item
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, ctx, key)
        except ConfigError:
            continue
    raise _mismatch(ctx, key, tp, value)


def _convert_container(tp: Any, origin: type, args: tuple, value: Any, ctx: _Ctx, key: str) -> Any:
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _mismatch(ctx, key, tp, value)
        vt = args[1] if args else Any
        return {k: _convert(vt, v, ctx, _dot(key, str(k))) for k, v in value.items()}
    if not isinstance(value, list | tuple):
        raise _mismatch(ctx, key, tp, value)
    if origin is list:
        et = args[0] if args else Any
        return [_convert(et, v, ctx, f"{key}[{i}]") for i, v in enumerate(value)]
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        et = args[0] if args else Any
        return tuple(_convert(et, v, ctx, f"{key}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise ctx.error(f"{key}: expected {_type_name(tp)} ({len(args)} items), got {_got(value)}")
    return tuple(_convert(a, v, ctx, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


# ---------------------------------------------------------------- messages


def _unknown(ctx: _Ctx, prefix: list[str], key: str, valid: list[str]) -> ConfigError:
    dotted = ".".join([*prefix, key])
    hint = _suggest(ctx.root, prefix, key, valid)
    if hint:
        tail = f" (did you mean '{hint}'?)"
    else:
        tail = f" (valid keys here: {', '.join(valid)})" if valid else ""
    return ctx.error(f"unknown key '{dotted}'{tail}")


def _suggest(root: type, prefix: list[str], key: str, valid: list[str]) -> str | None:
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return ".".join([*prefix, close[0]])
    # A key put at the wrong level (`lr` instead of `optim.lr`): match its leaf name anywhere in the tree.
    everywhere = _all_keys(root)
    leaves = {k.rsplit(".", 1)[-1]: k for k in everywhere}
    close = difflib.get_close_matches(key, list(leaves), n=1, cutoff=0.8)
    return leaves[close[0]] if close else None


@cache
def _all_keys(cls: type, prefix: str = "") -> tuple[str, ...]:
    keys: list[str] = []
    for name, tp in _hints(cls).items():
        keys.append(_dot(prefix, name))
        base = _strip_none(tp)
        if dataclasses.is_dataclass(base):
            keys.extend(_all_keys(base, _dot(prefix, name)))
    return tuple(keys)


def _mismatch(ctx: _Ctx, key: str, tp: Any, value: Any) -> ConfigError:
    nonfinite = tp is float and isinstance(value, float) and not math.isfinite(value)
    want = "a finite float" if nonfinite else _type_name(tp)
    return ctx.error(f"{key or '<root>'}: expected {want}, got {_got(value)}")


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "None"
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if dataclasses.is_dataclass(tp):
        return f"a table ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _strip_none(tp: Any) -> Any:
    """X for `X | None`; the type itself otherwise."""
    if get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _dot(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# ---------------------------------------------------------------- writing


def to_dict(cfg: Any) -> Any:
    """Plain TOML-able data: Paths as str, tuples as lists, None omitted (TOML has no null).

    A field whose default is not None but is set to None therefore reloads as its default.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(v) for f in dataclasses.fields(cfg) if (v := getattr(cfg, f.name)) is not None}
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items() if v is not None}
    if isinstance(cfg, list | tuple):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def dump_toml(cfg: Any) -> str:
    """The config as TOML text that `load_config` reads back to an equal config."""
    return tomli_w.dumps(to_dict(cfg))


def save_resolved(cfg: Any, run_dir: str | Path) -> Path:
    """Write `run_dir/config.resolved.toml` atomically and return its path."""
    return atomic_write_text(Path(run_dir) / RESOLVED_NAME, dump_toml(cfg))


def config_hash(cfg: Any) -> str:
    """sha256 of the canonical JSON of `to_dict(cfg)`: equal configs hash equal across runs."""
    text = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
