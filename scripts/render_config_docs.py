#!/usr/bin/env python3
"""Write config/README.md — every configuration key, its type, default, limits and description — from the JSON
schema that validates the tier files, so the documentation cannot drift from what the validator accepts.

Usage (from anywhere; paths are relative to the repository root)::

    python scripts/render_config_docs.py            # rewrite config/README.md
    python scripts/render_config_docs.py --check    # exit 1 if config/README.md is out of date

The schema (``src/rankrepro/schemas/config.schema.yaml``, also reachable as ``workflow/schemas/config.schema.yaml``)
is read with PyYAML only (no rankrepro, no Snakemake import). ``$ref`` (local ``#/$defs/…``), ``allOf`` (a section
that inherits shared keys and lists them as ``key: {}``), nested objects, arrays of objects (``key[].sub``) and maps
(``additionalProperties`` with a schema: ``key.<name>``) are resolved into one row per key.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SCHEMA = Path("src/rankrepro/schemas/config.schema.yaml")
OUTPUT = Path("config/README.md")

TYPE_NAMES = {
    "integer": "int",
    "number": "number",
    "string": "str",
    "boolean": "bool",
    "null": "null",
    "object": "object",
    "array": "list",
}


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``$ref`` and ``allOf`` merged in (the node's own keys win; properties are merged key by key,
    a ``{}`` placeholder taking the inherited definition)."""
    schema = dict(schema)
    parts: list[dict[str, Any]] = []
    ref = schema.pop("$ref", None)
    if ref is not None:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, not {ref!r}")
        target: Any = root
        for name in ref[2:].split("/"):
            target = target[name]
        parts.append(resolve(target, root))
    # an allOf part lends its keys, not its description (that of a shared block of keys, not of this section)
    parts.extend(
        {key: value for key, value in resolve(part, root).items() if key != "description"}
        for part in schema.pop("allOf", [])
    )
    merged: dict[str, Any] = {}
    for part in [*parts, schema]:
        for key, value in part.items():
            if key == "properties" and key in merged:
                properties = dict(merged[key])
                for name, sub in value.items():
                    properties[name] = {**properties.get(name, {}), **sub}
                merged[key] = properties
            elif key == "required" and key in merged:
                merged[key] = list(dict.fromkeys([*merged[key], *value]))
            else:
                merged[key] = value
    if "properties" in merged:
        merged["properties"] = {name: resolve(sub, root) for name, sub in merged["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(merged.get(key), dict):
            merged[key] = resolve(merged[key], root)
    return merged


def type_text(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind is None:
        if "enum" in schema:
            kinds = sorted({type(value).__name__ for value in schema["enum"]})
            return " \\| ".join(
                {"NoneType": "null", "str": "str", "int": "int", "float": "number"}.get(k, k) for k in kinds
            )
        return "any"
    if isinstance(kind, list):
        return " \\| ".join(type_text({**schema, "type": k}) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return f"list[{type_text(items)}]" if isinstance(items, dict) else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict) and not schema.get("properties"):
        return f"map[str → {type_text(schema['additionalProperties'])}]"
    return TYPE_NAMES.get(kind, kind)


def value_text(value: Any) -> str:
    """A default or enum value as it would be written in YAML (JSON flow style; 1e-06 written 1.0e-06, which YAML 1.1
    readers such as PyYAML take for a number, not a string)."""
    if isinstance(value, str):
        return value
    return re.sub(r"(?<![\w.])(-?\d+)e([-+]?\d+)", r"\1.0e\2", json.dumps(value, ensure_ascii=False))


def scalar_limits(schema: dict[str, Any]) -> list[str]:
    limits = []
    if "minimum" in schema:
        limits.append(f"≥ {value_text(schema['minimum'])}")
    if "exclusiveMinimum" in schema:
        limits.append(f"> {value_text(schema['exclusiveMinimum'])}")
    if "maximum" in schema:
        limits.append(f"≤ {value_text(schema['maximum'])}")
    if "exclusiveMaximum" in schema:
        limits.append(f"< {value_text(schema['exclusiveMaximum'])}")
    if "enum" in schema:
        limits.append("one of " + ", ".join(f"`{value_text(value)}`" for value in schema["enum"]))
    if "pattern" in schema:
        limits.append(f"matches `{schema['pattern']}`")
    if "minLength" in schema:
        limits.append(f"length ≥ {schema['minLength']}")
    return limits


def limits_text(schema: dict[str, Any]) -> str:
    limits = scalar_limits(schema)
    if schema.get("type") == "array" or "items" in schema:
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is not None and low == high:
            limits.append(f"exactly {low} items")
        else:
            if low:
                limits.append(f"≥ {low} items")
            if high is not None:
                limits.append(f"≤ {high} items")
        if schema.get("uniqueItems"):
            limits.append("no repeats")
        items = schema.get("items")
        if isinstance(items, dict):
            item_limits = scalar_limits(items)
            if items.get("type") == "array" or "items" in items:
                item_limits = [limits_text(items)] if limits_text(items) else []
            if item_limits:
                limits.append("each " + ", ".join(item_limits))
    return "; ".join(limits)


def default_text(name: str, schema: dict[str, Any], required: set[str]) -> str:
    if "default" in schema:
        return f"`{value_text(schema['default'])}`"
    return "**required**" if name in required else "optional"


#: appended to the description of a key the schema marks ``x-bookkeeping: true``
BOOKKEEPING_NOTE = " *(bookkeeping: changes no number; not a departure from the paper tier)*"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipe, no newline, no ``<word>`` taken for an HTML tag)."""
    return re.sub(r"<(?=[A-Za-z/!])", "&lt;", " ".join(text.replace("|", "\\|").split()))


def rows(schema: dict[str, Any], prefix: str) -> list[tuple[str, str, str, str, str]]:
    """(key path, type, default, limits, description) of every key under an object schema, depth first."""
    out = []
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        out.append(
            (
                f"`{path}`",
                type_text(sub),
                default_text(name, sub, required),
                limits_text(sub),
                cell(sub.get("description", "") + (BOOKKEEPING_NOTE if sub.get("x-bookkeeping") else "")),
            )
        )
        out.extend(children(sub, path))
    return out


def children(schema: dict[str, Any], path: str) -> list[tuple[str, str, str, str, str]]:
    """Rows of the keys inside an object, a list of objects or a map of objects."""
    if schema.get("properties"):
        return rows(schema, f"{path}.")
    items = schema.get("items")
    if isinstance(items, dict) and items.get("properties"):
        return rows(items, f"{path}[].")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        return rows(extra, f"{path}.<name>.")
    return []


def table(entries: list[tuple[str, str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | limits | description |", "|---|---|---|---|---|"]
    lines += [
        f"| {key} | {kind} | {default} | {limits} | {description} |"
        for key, kind, default, limits, description in entries
    ]
    return lines


def anchor(title: str) -> str:
    """GitHub's heading anchor of a plain ``## `name` `` heading."""
    return "".join(ch for ch in title.lower().replace(" ", "-") if ch.isalnum() or ch in "-_")


def render(schema_path: Path) -> str:
    raw = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
    root = resolve(raw, raw)
    source = SCHEMA.as_posix()
    experiments = root["properties"]["experiments"]
    globals_ = {key: value for key, value in root["properties"].items() if key != "experiments"}
    lines = [
        "# Configuration keys",
        "",
        f"<!-- Generated by scripts/render_config_docs.py from {source}; do not edit by hand. -->",
        "",
        f"*Generated by `scripts/render_config_docs.py` from [`{source}`](../{source}) (the schema every tier file is "
        "validated against); do not edit by hand: change the schema and rerun the script.*",
        "",
        "One file per tier: [`smoke.yaml`](smoke.yaml), [`config.yaml`](config.yaml) (the default tier) and "
        "[`paper.yaml`](paper.yaml) (see [docs/tiers.md](../docs/tiers.md)). A tier file given with `--configfile` "
        "replaces the default one instead of being merged into it, so every tier file is complete on its own; "
        "`--config key=value` overrides single keys. [`paper-rehearsal.yaml`](paper-rehearsal.yaml) is not a tier "
        "but an overlay for the paper tier, given after it "
        "(`--configfile config/paper.yaml config/paper-rehearsal.yaml`), "
        "that shrinks budgets only ([docs/tiers.md](../docs/tiers.md#rehearsing-the-paper-tier)). "
        "An experiment runs in a tier when the tier file has its section "
        "under `experiments`. Unknown keys, wrong types, values outside the limits below, and NaN or infinite numbers "
        "stop the run at once with one line naming the key ([docs/bad-inputs.md](../docs/bad-inputs.md)).",
        "",
        "Reading the tables: **required** keys have no default; *optional* keys without a default may be left out "
        "(the experiment then does without them); `key[].sub` is a key of every item of the list `key`; "
        "`key.<name>.sub` a key of every entry of the map `key`; `a | b` a value of either type. "
        "Every figure's caption names each key whose value differs from the paper tier's "
        "([`paper.yaml`](paper.yaml)), except the keys marked *bookkeeping* "
        "(they change no number: logging cadence, batching).",
        "",
        "## Global settings",
        "",
        *table(rows({"properties": globals_, "required": root.get("required", [])}, "")),
        "",
        "## Experiments",
        "",
        "| experiment | schema definition (`$defs`) |",
        "|---|---|",
    ]
    seen: dict[str, str] = {}
    sections: list[str] = []
    for name, original in raw["properties"]["experiments"]["properties"].items():
        lines.append(f"| [`{name}`](#{anchor(name)}) | `{original.get('$ref', '').rsplit('/', 1)[-1]}` |")
    lines.append("")
    for name, original in raw["properties"]["experiments"]["properties"].items():
        ref = original.get("$ref", name)
        schema = experiments["properties"][name]
        sections += [f"## `{name}`", ""]
        if schema.get("description"):
            sections += [cell(schema["description"]), ""]
        if ref in seen:
            sections += [f"The same keys as [`{seen[ref]}`](#{anchor(seen[ref])}) (one schema definition).", ""]
        seen.setdefault(ref, name)
        sections += [*table(rows(schema, f"experiments.{name}.")), ""]
    return "\n".join(lines + sections).rstrip("\n") + "\n"


def undocumented(schema_path: Path) -> list[str]:
    """Key paths without a description (reported by --missing)."""
    raw = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
    root = resolve(raw, raw)
    everything = rows({"properties": root["properties"]}, "")
    return [key.strip("`") for key, _, _, _, description in everything if not description]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", type=Path, default=SCHEMA, help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the file is out of date")
    parser.add_argument("--missing", action="store_true", help="list the keys that have no description")
    args = parser.parse_args(argv)
    schema = args.schema if args.schema.is_absolute() else REPO / args.schema
    out = args.out if args.out.is_absolute() else REPO / args.out
    if args.missing:
        print("\n".join(undocumented(schema)))
        return 0
    text = render(schema)
    current = out.read_text(encoding="utf-8") if out.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.out} is out of date: run python scripts/render_config_docs.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        out.write_text(text, encoding="utf-8")
        print(f"rewrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
