"""Typed settings: an experiment's section of the validated tier config as a frozen dataclass, and how a tier departs
from the paper's.

The JSON schema (``rankrepro/schemas/config.schema.yaml``) stays the one source of keys, defaults and limits: a
settings class declares one field per key of its experiment's section, with a type and without a default, and
:meth:`SettingsRecord.from_mapping` builds it from the section :func:`rankrepro.pipeline.config.validate_config`
returned. Types are converted there and only there (``float`` fields accept integers; lists become tuples, mappings
read-only), so the code below reads ``settings.lr``, never ``float(settings["lr"])``. The mapping it was built from
stays available unchanged (:meth:`SettingsRecord.record`): checkpoint fingerprints and ``summary.json`` record it.

:func:`departures` lists, key by key, how one tier's section differs from the paper tier's; keys the schema marks
``x-bookkeeping: true`` (logging cadence, batching, how the same numbers are computed) are not departures.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Self

from rankrepro.core.errors import ConfigError
from rankrepro.pipeline.config import experiment_section, load_schema, resolve_ref

#: schema annotation of a key whose value does not change what an experiment computes
BOOKKEEPING = "x-bookkeeping"
_RECORD = "_record"


@dataclasses.dataclass(frozen=True)
class SettingsRecord:
    """Base of every typed settings class: a frozen dataclass whose fields are the keys of one config mapping.

    Subclasses are ``@dataclass(frozen=True)`` with annotated fields and no defaults. Field types may be ``int``,
    ``float``, ``bool``, ``str``, a ``Literal``, ``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``,
    ``Mapping[str, X]`` or another :class:`SettingsRecord` (a nested mapping).
    """

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "settings") -> Self:
        """Build from a validated mapping: every field must have its key (a field typed ``X | None`` may be absent:
        None) and every key a field; values converted to the field types. ``where`` names the mapping in errors."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"config key '{where}' must be a mapping, not {type(mapping).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        extra = sorted(set(mapping) - set(names))
        if extra:
            raise ConfigError(f"config key(s) {extra} under '{where}' have no field in {cls.__name__}")
        values = {}
        for name in names:
            if name not in mapping and not _admits_none(hints[name]):
                raise ConfigError(f"config key '{where}.{name}' is missing (no default in the schema)")
            values[name] = convert(mapping.get(name), hints[name], f"{where}.{name}")
        instance = cls(**values)
        object.__setattr__(instance, _RECORD, copy.deepcopy(dict(mapping)))
        return instance

    def record(self) -> dict[str, Any]:
        """The mapping this was built from, unchanged (a copy): what fingerprints and summaries record."""
        return copy.deepcopy(getattr(self, _RECORD))


def _admits_none(annotation: Any) -> bool:
    """Whether a field type is ``X | None``."""
    return type(None) in typing.get_args(annotation) and _is_union(annotation)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the type ``annotation`` (see :class:`SettingsRecord`), or :class:`ConfigError` naming ``where``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(annotation):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return convert(value, inner, where)
    if isinstance(annotation, type) and issubclass(annotation, SettingsRecord):
        return annotation.from_mapping(value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key '{where}': {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}' must be a list, not {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(item, args[0], f"{where}.{i}") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key '{where}' must have {len(args)} items, not {len(value)}")
        return tuple(convert(item, arg, f"{where}.{i}") for i, (item, arg) in enumerate(zip(value, args)))
    if origin in (Mapping, dict) or annotation is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{where}' must be a mapping, not {type(value).__name__}")
        item_type = args[1] if args else Any
        return types.MappingProxyType({key: convert(item, item_type, f"{where}.{key}") for key, item in value.items()})
    return _scalar(value, annotation, where)


def _scalar(value: Any, annotation: Any, where: str) -> Any:
    """A scalar of type ``annotation``: ``float`` takes integers (converted), ``int`` and ``float`` refuse booleans."""
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and isinstance(value, annotation):
        if annotation is int and isinstance(value, bool):
            raise ConfigError(f"config key '{where}' must be an integer, not a boolean")
        return value
    raise ConfigError(f"config key '{where}' must be {getattr(annotation, '__name__', annotation)}, not {value!r}")


def field_names(cls: type[SettingsRecord]) -> list[str]:
    """The keys a settings class reads (its fields, in order)."""
    return [f.name for f in dataclasses.fields(cls)]


# ------------------------------------------------------------------------------------------------------- departures
def departures(settings: Mapping[str, Any], paper: Mapping[str, Any], bookkeeping: frozenset[str]) -> list[str]:
    """How ``settings`` (one experiment's section) differs from the paper tier's section ``paper``: one
    ``"<key> <value> (paper: <value>)"`` per differing key, nested mappings compared key by key (dotted keys),
    leaving out the keys in ``bookkeeping`` (dotted, as :func:`bookkeeping_keys` lists them)."""
    found = []
    for key in sorted(set(settings) | set(paper)):
        if key in bookkeeping:
            continue
        ours, theirs = settings.get(key), paper.get(key)
        if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
            inner = frozenset(k.removeprefix(f"{key}.") for k in bookkeeping if k.startswith(f"{key}."))
            found += [f"{key}.{item}" for item in departures(ours, theirs, inner)]
        elif ours != theirs:
            found.append(f"{key} {describe(ours)} (paper: {describe(theirs)})")
    return found


def describe(value: Any) -> str:
    """A setting as caption text: integers with thousands separators, lists without brackets, absent as ``—``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(describe(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {describe(item)}" for key, item in value.items()) + "}"
    return str(value)


def section_properties(schema: Mapping[str, Any], experiment: str) -> dict[str, dict[str, Any]]:
    """The properties of experiment ``experiment``'s section in the tier-config ``schema``: its own and those of its
    ``allOf`` blocks (local ``$ref``s resolved; a property's own annotations win over the block's)."""
    node = resolve_ref(schema["properties"]["experiments"]["properties"][experiment], schema)
    return _properties(node, schema)


def _properties(node: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    props: dict[str, dict[str, Any]] = {}
    for part in node.get("allOf", []):
        for key, sub in _properties(resolve_ref(part, schema), schema).items():
            props[key] = sub
    for key, sub in node.get("properties", {}).items():
        props[key] = {**props.get(key, {}), **resolve_ref(sub, schema), **{k: v for k, v in sub.items() if k != "$ref"}}
    return props


def bookkeeping_keys(schema: Mapping[str, Any], experiment: str) -> frozenset[str]:
    """Dotted keys of experiment ``experiment``'s section that the schema marks ``x-bookkeeping: true`` (one level of
    nesting: ``rank_estimation.samples``)."""
    keys = set()
    for key, sub in section_properties(schema, experiment).items():
        if sub.get(BOOKKEEPING):
            keys.add(key)
        for inner, inner_sub in _properties(sub, schema).items() if sub.get("type") == "object" else ():
            if inner_sub.get(BOOKKEEPING):
                keys.add(f"{key}.{inner}")
    return frozenset(keys)


# ---------------------------------------------------------------------------------------------------- figure context
@dataclasses.dataclass(frozen=True)
class FigureContext:
    """What an experiment's ``plot`` needs besides its results: the tier's name and the paper tier's section of the
    experiment (None when no paper config was given), to state in the caption how the tier departs from it."""

    tier: str
    paper: Mapping[str, Any] | None = None
    bookkeeping: frozenset[str] = frozenset()  #: keys that are not departures (:func:`bookkeeping_keys`)

    def substitutions(self, settings: Mapping[str, Any], *notes: str) -> str:
        """The caption's substitutions: ``notes`` (what the settings do not show: a substitute dataset, our own
        generator), then every setting of ``settings`` (the experiment's section, as its summary records it) that
        differs from the paper tier's (:func:`departures`); ``none`` when there is nothing to say."""
        if self.paper is None:
            compared = ["settings not compared with the paper tier's (no paper config given)"]
        else:
            found = departures(settings, self.paper, self.bookkeeping)
            compared = [f"settings departing from the paper tier: {'; '.join(found)}"] if found else []
        return "; ".join([*notes, *compared]) or "none"


def figure_context(
    tier: str, experiment: str, paper: Mapping[str, Any] | None, schema: Mapping[str, Any] | None = None
) -> FigureContext:
    """The :class:`FigureContext` of ``experiment`` in ``tier``: the paper tier's section of it from the validated
    ``paper`` tier config (None, or a paper tier without that experiment: nothing to compare with) and the keys the
    config ``schema`` (default: the packaged one) marks as bookkeeping."""
    if paper is None or experiment not in paper["experiments"]:
        return FigureContext(tier)
    schema = load_schema() if schema is None else schema
    return FigureContext(tier, experiment_section(paper, experiment), bookkeeping_keys(schema, experiment))
