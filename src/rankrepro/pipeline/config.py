"""Loading and validating tier configurations.

A tier config (``config/{smoke,config,paper}.yaml``) holds global settings (tier name, device, threads, data mirror)
and one section per experiment under ``experiments``. It is validated against the JSON schema shipped in
``rankrepro/schemas/config.schema.yaml`` (the same file the Snakefile validates with ``snakemake.utils.validate``),
so a bad value stops the run at once with a message naming the key.

The workflow hands each experiment's jobs a *settings file* instead of the whole tier config: the part of the resolved
config those jobs read (:func:`job_settings`), itself a valid tier config with one experiment section, written to
``<results_root>/<tier>/settings/<experiment>.<hash>.yaml``, where the hash is that of its content
(:func:`settings_path`, :func:`settings_text`). A file never gets other content: an invocation with another config
names another file, so a running job's settings cannot change under it, and :func:`load_config` refuses a settings
file whose content no longer matches its name.
"""

from __future__ import annotations

import copy
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from rankrepro.core.errors import ConfigError
from rankrepro.core.io import fingerprint

SCHEMA_RESOURCE = "schemas/config.schema.yaml"

#: folder, under ``<results_root>/<tier>/``, of the experiments' settings files
SETTINGS_DIR = "settings"
#: name of a settings file: ``<experiment>.<hash of its content>.yaml``
SETTINGS_NAME = re.compile(r"^(?P<experiment>[a-z][a-z0-9_]*)\.(?P<hash>[0-9a-f]{16})\.yaml$")
#: top-level keys of a tier config that an experiment's jobs read (``threads`` is not one: Snakemake passes each job
#: its thread count with ``--threads``)
JOB_KEYS = ("tier", "device", "results_root", "figures_root")
#: top-level keys that the run job of an experiment on real data reads as well
DATA_KEYS = ("data_cache", "data_mirror")
#: key of an experiment's section holding what its run job asks the scheduler for (memory, runtime, priority)
RESOURCES_KEY = "resources"
#: keys of an experiment's section that only the workflow reads: never part of the settings its jobs get
WORKFLOW_KEYS = (RESOURCES_KEY,)


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
    schema = resolve_ref(schema, root)
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"], root)
        return
    if not isinstance(instance, dict):
        return
    for key, written in schema.get("properties", {}).items():
        sub = resolve_ref(written, root)
        default = written.get("default", sub.get("default"))  # a default beside a $ref wins over the target's
        if key not in instance and ("default" in written or "default" in sub):
            instance[key] = copy.deepcopy(default)
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    for part in schema.get("allOf", []):  # shared property blocks: their defaults apply too
        _fill_defaults(instance, part, root)


def resolve_ref(sub: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Resolve a local ``$ref`` of the form ``#/$defs/name`` (the only kind the schema uses)."""
    ref = sub.get("$ref")
    if not ref:
        return sub
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _non_finite(value: Any, path: str = ""):
    """(dotted key, value) of every NaN or ±inf float in a nested config (JSON schema's bounds let NaN through:
    every comparison with NaN is false)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path or "<root>", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{path}.{index}")


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a config dict against the schema and return a copy with defaults filled in.

    Raises :class:`ConfigError` naming the first offending key.
    """
    if not isinstance(config, dict):
        raise ConfigError("the config file must hold a mapping of keys to values")
    bad = next(_non_finite(config), None)
    if bad is not None:
        key, value = bad
        raise ConfigError(f"config key '{key}': {value} is not a finite number (YAML .nan/.inf are not allowed)")
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_describe(errors[0]))
    filled = copy.deepcopy(config)
    _fill_defaults(filled, schema)
    return filled


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping naming a key twice is an error: the plain loader keeps the last
    value silently, so a second ``lr:`` added below the first would replace it without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | os.PathLike) -> Any:
    """The YAML content of a config file (``{}`` when empty), read with :class:`UniqueKeyLoader`; a missing file, one
    that is not UTF-8, not YAML or names a key twice is a one-line :class:`ConfigError` with the line. The workflow
    reads its ``--configfile`` files with it too: Snakemake's own loader keeps a repeated key's last value."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML tier config, apply ``overrides`` (top-level keys), validate, and return it.

    A settings file (``…/settings/<experiment>.<hash>.yaml``) must still hold the content its name was made from.
    """
    path = Path(path)
    config = read_config_file(path)
    _check_settings_name(path, config)
    if overrides:
        config = {**config, **overrides}
    return validate_config(config)


def experiment_section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The settings of experiment ``name`` in a validated config: its section without the keys only the workflow
    reads (:data:`WORKFLOW_KEYS`), so that a run job's resources reach neither its settings file nor its results."""
    try:
        section = config["experiments"][name]
    except KeyError:
        raise ConfigError(
            f"experiment '{name}' has no section under 'experiments' in this config (tier '{config.get('tier')}')"
        ) from None
    return {key: value for key, value in section.items() if key not in WORKFLOW_KEYS}


def job_settings(config: dict[str, Any], experiment: str, *, reads_data: bool) -> dict[str, Any]:
    """The settings of one experiment's jobs: the part of the validated tier config ``config`` that its run, plot and
    claims jobs read, as a tier config of its own with the one experiment section.

    That is the experiment's section (without its ``resources``: :func:`experiment_section`) and the global keys
    :data:`JOB_KEYS`, plus :data:`DATA_KEYS` when the experiment reads datasets (``reads_data``): moving the data
    mirror changes nothing for an experiment on synthetic data. ``threads`` is left out (Snakemake gives each job its
    thread count). The workflow writes this to the experiment's
    settings file, so a change of any of these values, and only of these, reruns the experiment.
    """
    keys = JOB_KEYS + (DATA_KEYS if reads_data else ())
    settings = {key: copy.deepcopy(config[key]) for key in keys if key in config}
    settings["experiments"] = {experiment: copy.deepcopy(experiment_section(config, experiment))}
    return settings


def settings_hash(settings: dict[str, Any]) -> str:
    """Hash of a settings mapping (16 hex digits), as it appears in its file's name."""
    return fingerprint(settings)


def settings_path(results: str, experiment: str, settings: dict[str, Any]) -> str:
    """``<results>/settings/<experiment>.<hash>.yaml``: the settings file of ``experiment`` with ``settings``, where
    ``results`` is the tier's results folder (``<results_root>/<tier>``, as the workflow spells it)."""
    return f"{results}/{SETTINGS_DIR}/{experiment}.{settings_hash(settings)}.yaml"


def settings_text(name: str, settings: dict[str, Any]) -> str:
    """The YAML text of the settings file called ``name`` (``<experiment>.<hash>.yaml``) holding ``settings``: a
    comment saying what it is, then the settings (keys sorted; lists of scalars and each run's mapping on one line).

    Raises :class:`ConfigError` when ``name`` is not the name of these settings (another experiment, another hash).
    """
    match = SETTINGS_NAME.match(name)
    experiments = list(settings.get("experiments", {}))
    if match is None or experiments != [match["experiment"]] or match["hash"] != settings_hash(settings):
        raise ConfigError(
            f"{name} is not the settings file of these settings (experiment(s) {experiments}, hash "
            f"{settings_hash(settings)}); its name must be <experiment>.<hash>.yaml"
        )
    experiment = match["experiment"]
    return (
        f"# Settings of experiment {experiment}: its part of the resolved tier config, written by the workflow and read\n"  # noqa: E501
        f"# by its jobs (rankrepro run|plot|claims {experiment} --config THIS_FILE). The name holds the hash of the\n"
        "# content: never edit it (rankrepro refuses a settings file whose content does not match its name).\n"
        + yaml.safe_dump(settings, sort_keys=True, allow_unicode=True, default_flow_style=None, width=120)
    )


def _check_settings_name(path: Path, content: Any) -> None:
    """Refuse a settings file whose content is not the one its name was made from (edited after it was written)."""
    match = SETTINGS_NAME.match(path.name)
    if match is None or path.parent.name != SETTINGS_DIR or not isinstance(content, dict):
        return
    if settings_hash(content) != match["hash"]:
        raise ConfigError(
            f"settings file {path} was changed after the workflow wrote it (its content hash is "
            f"{settings_hash(content)}, its name says {match['hash']}); delete it and rerun Snakemake"
        )
