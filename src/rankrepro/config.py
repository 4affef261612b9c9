"""Loading and validating tier configurations.

A tier config (``config/{smoke,config,paper}.yaml``) holds global settings (tier name, device, threads, data mirror)
and one section per experiment under ``experiments``. It is validated against the JSON schema shipped in
``rankrepro/schemas/config.schema.yaml`` (the same file the Snakefile validates with ``snakemake.utils.validate``),
so a bad value stops the run at once with a message naming the key.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from rankrepro.errors import ConfigError

SCHEMA_RESOURCE = "schemas/config.schema.yaml"


def load_schema() -> dict[str, Any]:
    """The JSON schema of a tier config, as a dict."""
    text = resources.files("rankrepro").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    """Dotted path of the config key a validation error refers to (``<root>`` for the top level)."""
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<root>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One human sentence for a schema violation, naming the key."""
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = _key_path(error)
        return f"unknown config key(s) {extra} under '{where}'; allowed: {sorted(error.schema.get('properties', {}))}"
    return f"config key '{_key_path(error)}': {error.message}"


def _fill_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> None:
    """Fill in ``default`` values of object properties and array items, recursively (local properties first, then
    those of ``allOf`` blocks)."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"], root)
        return
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    for part in schema.get("allOf", []):  # shared property blocks: their defaults apply too
        _fill_defaults(instance, part, root)


def _resolve(sub: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Resolve a local ``$ref`` of the form ``#/$defs/name`` (the only kind the schema uses)."""
    ref = sub.get("$ref")
    if not ref:
        return sub
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a config dict against the schema and return a copy with defaults filled in.

    Raises :class:`ConfigError` naming the first offending key.
    """
    if not isinstance(config, dict):
        raise ConfigError("the config file must hold a mapping of keys to values")
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_describe(errors[0]))
    filled = copy.deepcopy(config)
    _fill_defaults(filled, schema)
    return filled


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML tier config, apply ``overrides`` (top-level keys), validate, and return it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if overrides:
        config = {**config, **overrides}
    return validate_config(config)


def experiment_section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The settings of experiment ``name`` in a validated config."""
    try:
        return config["experiments"][name]
    except KeyError:
        raise ConfigError(
            f"experiment '{name}' has no section under 'experiments' in this config (tier '{config.get('tier')}')"
        ) from None
