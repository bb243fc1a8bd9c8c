#!/usr/bin/env python3
"""Write the configuration reference, docs/config-reference.md, from the config schema (issue 28).

    python workflow/scripts/config_reference.py            # rewrite docs/config-reference.md
    python workflow/scripts/config_reference.py --check    # exit 1 when the file on disk is not what it would write

The schema (workflow/schemas/config.schema.yaml) owns every key, type, default and allowed value, so the
reference is generated from it and never edited by hand: one section per top-level key, a table of every
nested key (``<name>`` stands for a key you choose, ``[]`` for the items of a list) and one section per shared
definition (``$defs``). The output depends on the schema alone (its key order included), so it is the same on
every machine. Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
OUT = REPO / "docs" / "config-reference.md"
REGENERATE = "python workflow/scripts/config_reference.py"


# ------------------------------------------------------------------------------------------ values

def value(v: object) -> str:
    """A YAML-style rendering of a schema value (a default, an enum member), without quotes for plain text."""
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v else '""'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {value(x)}" for k, x in v.items()) + "}"
    return str(v)


def code(v: object) -> str:
    return f"`{value(v)}`"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell (one line; pipes escaped, also inside code spans as GFM wants)."""
    return " ".join(str(text).split()).replace("|", "\\|") or "—"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    out = "".join(ch for ch in heading.strip().lower() if ch.isalnum() or ch in " -_")
    return out.replace(" ", "-")


def def_link(name: str) -> str:
    return f"[{name}](#{slug(name)})"


# ------------------------------------------------------------------------------------------ one schema node

def bounds(node: dict) -> list[str]:
    """The constraints of a node besides its type and enum, in words."""
    out = []
    if "minimum" in node:
        out.append(f"≥ {value(node['minimum'])}")
    if "exclusiveMinimum" in node:
        out.append(f"> {value(node['exclusiveMinimum'])}")
    if "maximum" in node:
        out.append(f"≤ {value(node['maximum'])}")
    if "exclusiveMaximum" in node:
        out.append(f"< {value(node['exclusiveMaximum'])}")
    if "maxLength" in node:
        out.append(f"at most {node['maxLength']} characters")
    if "pattern" in node:
        out.append(f"matches `{node['pattern']}`")
    lo, hi = node.get("minItems"), node.get("maxItems")
    if lo is not None and hi is not None:
        out.append(f"{lo} items" if lo == hi else f"{lo}–{hi} items")
    elif lo is not None:
        out.append(f"at least {lo} item{'s' if lo != 1 else ''}")
    elif hi is not None:
        out.append(f"at most {hi} items")
    if node.get("uniqueItems"):
        out.append("no repeats")
    if "minProperties" in node:
        n = node["minProperties"]
        out.append(f"at least {n} entr{'ies' if n != 1 else 'y'}")
    names = node.get("propertyNames") or {}
    if "enum" in names:
        out.append("keys: " + ", ".join(code(x) for x in names["enum"]))
    elif "pattern" in names:
        out.append(f"keys match `{names['pattern']}`")
    if isinstance(node.get("not"), dict) and "const" in node["not"]:
        out.append(f"not {code(node['not']['const'])}")
    return out


def value_type(values: list) -> str:
    """The type word of a set of literal values (an enum or a const)."""
    kinds = {"boolean" if isinstance(v, bool) else "null" if v is None else "integer" if isinstance(v, int)
             else "number" if isinstance(v, float) else "string" for v in values}
    return " or ".join(sorted(kinds))


def summary(node: dict) -> tuple[str, str]:
    """(type, allowed values) of a schema node, in words."""
    if "$ref" in node:
        return f"see {def_link(node['$ref'].rsplit('/', 1)[1])}", ""
    if "oneOf" in node:
        parts = [(alt, *summary(alt)) for alt in node["oneOf"]]
        types = list(dict.fromkeys(t for _, t, _ in parts))
        if not any(a for _, _, a in parts):
            return " or ".join(types), ""
        words = [a if ("const" in alt or "enum" in alt) else f"{t} ({a})" if a else t for alt, t, a in parts]
        return " or ".join(types), " or ".join(words)
    if "allOf" in node:
        parts = [summary(alt) for alt in node["allOf"]]
        return " with ".join(t for t, _ in parts if t), "; ".join(a for _, a in parts if a)
    if set(node) == {"required"}:
        return "", "keys " + ", ".join(f"`{k}`" for k in node["required"]) + " required"
    allowed = []
    if "const" in node:
        typ = value_type([node["const"]])
        allowed.append(code(node["const"]))
    elif "enum" in node:
        typ = value_type(node["enum"])
        allowed.append(", ".join(code(x) for x in node["enum"]))
    else:
        t = node.get("type")
        types = t if isinstance(t, list) else [t] if t else (["object"] if "properties" in node else [])
        words = []
        for x in types:
            if x == "array":
                item_type, item_allowed = summary(node.get("items", {})) if node.get("items") else ("", "")
                words.append(f"list of {item_type}" if item_type else "list")
                if item_allowed:
                    allowed.append("items: " + item_allowed)
            else:
                words.append({"object": "mapping"}.get(x, str(x)))
        typ = " or ".join(words) if words else "any"
    allowed += bounds(node)
    return typ, "; ".join(allowed)


# ------------------------------------------------------------------------------------------ walking the tree

class Row:
    def __init__(self, key: str, node: dict, required: bool) -> None:
        self.key, self.required = key, required
        self.type, self.allowed = summary(node)
        self.default = code(node["default"]) if "default" in node else ""
        self.description = node.get("description", "")

    def line(self) -> str:
        return "| " + " | ".join(cell(x) for x in (f"`{self.key}`", "yes" if self.required else "no", self.type,
                                                      self.default, self.allowed, self.description)) + " |"


def object_parts(node: dict) -> list[dict]:
    """The schema nodes whose properties a key holds: the node, its allOf parts and its oneOf mapping forms."""
    parts = [node]
    for alt in node.get("allOf", []) + node.get("oneOf", []):
        if isinstance(alt, dict) and "$ref" not in alt:
            parts.append(alt)
    return parts


def walk(node: dict, key: str, required: bool) -> list[Row]:
    """This key's row and the rows of every key below it (``$ref``'s are documented once, as definitions)."""
    rows = [Row(key, node, required)]
    if "$ref" in node:
        return rows
    seen: set[str] = set()
    for part in object_parts(node):
        req = set(part.get("required", []))
        for name, sub in part.get("properties", {}).items():
            if name not in seen:
                seen.add(name)
                rows += walk(sub, f"{key}.{name}", name in req)
        extra = part.get("additionalProperties")
        if isinstance(extra, dict) and "<name>" not in seen:
            seen.add("<name>")
            rows += walk(extra, f"{key}.<name>", False)
        items = part.get("items")
        if isinstance(items, dict) and ("properties" in items or "allOf" in items):
            rows += walk(items, f"{key}[]", False)[1:]  # the list's own row says what an item is
    return rows


def section(title: str, node: dict, key: str, required: bool | None) -> list[str]:
    out = [f"## {title}", ""]
    if required is not None:
        out += ["Required." if required else "Optional.", ""]
    out += ["| key | required | type | default | allowed values | description |", "|---|---|---|---|---|---|"]
    out += [r.line() for r in walk(node, key, bool(required))]
    return out + [""]


def render(schema: dict) -> str:
    """The whole reference as Markdown (deterministic: it follows the schema's own key order)."""
    top = schema.get("properties", {})
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from workflow/schemas/config.schema.yaml by workflow/scripts/config_reference.py;",
        f"     do not edit by hand: change the schema and run `{REGENERATE}`. -->",
        "",
        "Every key a study config may set, from the schema every config is validated against before any job runs",
        "(`workflow/schemas/config.schema.yaml`; it owns every default, filled in once by the pre-flight's",
        "validation). `config.yaml` is the documented demo study: a comment on each key it sets. A `--configfile`",
        "is merged into it mapping by mapping; list a key under `replace` to set it whole (see",
        "[cohort.md](cohort.md#the-config-derived-from-the-cohort)).",
        "",
        "In the tables, `<name>` stands for a key you choose (a study, an ROI setting, a window preset, ...) and `[]`",
        "for each item of a list; *required* means required within its parent mapping; an empty default means the",
        "schema sets none (the value comes from `config.yaml`, or the key is optional).",
        "",
    ]
    index = "Top-level keys: " + ", ".join(f"[`{k}`](#{slug(k)})" for k in top) + "."
    if defs:
        index += " Shared definitions: " + ", ".join(def_link(k) for k in defs) + "."
    lines += textwrap.wrap(index, 110, break_long_words=False, break_on_hyphens=False) + [""]
    for name, node in top.items():
        lines += section(f"`{name}`", node, name, name in required)
    if defs:
        lines += ["## Shared definitions", "",
                  "Parts of the schema that several keys use (`$defs`); a key of type *see ...* takes one of these.",
                  ""]
        for name, node in defs.items():
            lines += ["#" + s if s.startswith("## ") else s for s in section(f"`{name}`", node, name, None)]
    return "\n".join(lines).rstrip("\n") + "\n"


def expected(schema_path: Path = SCHEMA) -> str:
    return render(yaml.safe_load(schema_path.read_text(encoding="utf-8")))


def check(out: Path = OUT, schema_path: Path = SCHEMA) -> str:
    """'' when ``out`` holds exactly what this script would write, else what is wrong and how to fix it."""
    want = expected(schema_path)
    have = out.read_text(encoding="utf-8") if out.is_file() else None
    if have == want:
        return ""
    rel = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    what = "does not exist" if have is None else f"is out of date with {SCHEMA.relative_to(REPO)}"
    return f"{rel} {what}; regenerate it with: {REGENERATE}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file on disk differs from what would be written")
    args = ap.parse_args(argv)
    if args.check:
        problem = check()
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(REPO)} is current")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(expected(), encoding="utf-8", newline="\n")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
