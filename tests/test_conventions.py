"""The workflow's conventions (issue 16): defaults live in the schema only, the rule files read the filled
config, every rule names its conda env, and the conda env file pins exactly what envs/ pins for the venv."""

from __future__ import annotations

import copy
import re

import yaml

from ccgrade.config.studyconfig import apply_defaults, load_yaml, SCHEMA_DIR, schema_problems
from conftest import REPO, repo_config

RULES = sorted((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]


def schema_defaults(schema: dict, path: tuple = ()) -> dict[tuple, object]:
    """Every (dotted path -> default) the schema writes, read independently of jsonschema: properties only,
    and the properties of objects that themselves have a default."""
    out = {}
    for name, sub in schema.get("properties", {}).items():
        if "default" in sub:
            out[path + (name,)] = sub["default"]
        out.update(schema_defaults(sub, path + (name,)))
    return out


def test_no_rule_file_repeats_a_default():
    """config.get(key, default) (or .get on a section of it) in a rule file would be a second copy of a
    default the schema owns: rules read config[...] of the validated, filled config."""
    config_names = {"config", "RAD", "FUSION", "DEEP", "STUDIES", "KITS", "PUBLIC"}
    pat = re.compile(r"\b(" + "|".join(config_names) + r")\b(\[[^\]]+\])*\.get\(")
    hits = [f"{f.name}:{i}: {line.strip()}" for f in RULES for i, line in enumerate(f.read_text().splitlines(), 1)
            if pat.search(line)]
    assert not hits, "defaults belong in workflow/schemas/config.schema.yaml:\n" + "\n".join(hits)


def test_schema_defaults_are_filled_once_and_only_where_absent():
    schema = load_yaml(SCHEMA_DIR / "config.schema.yaml")
    want = schema_defaults(schema)
    assert ("fusion", "cv") in want and ("statistics", "n_boot") in want and ("geometry", "fallback") in want
    cfg = repo_config()
    for sect, key in [("fusion", "cv"), ("fusion", "nested_cv"), ("geometry", "fallback"), ("figures", "heatmap_patients")]:
        cfg[sect].pop(key, None)
    del cfg["statistics"]
    cfg["fusion"]["max_corr"] = 0.5  # given: kept
    filled = apply_defaults(copy.deepcopy(cfg))
    assert filled["fusion"]["cv"] == want[("fusion", "cv")] and filled["fusion"]["nested_cv"] == 0
    assert filled["geometry"]["fallback"] is True and filled["figures"]["heatmap_patients"] == 2
    assert filled["statistics"] == {"mode": "honest", "adjust": ["holm"], "n_boot": 2000, "max_ci_width": 0.4}  # filled
    assert filled["fusion"]["max_corr"] == 0.5
    assert filled["fusion"]["deep"]["variant"] == "base" and filled["fusion"]["deep"]["seed"] == 1
    assert apply_defaults(copy.deepcopy(filled)) == filled  # idempotent
    # the pre-flight's schema check fills them as it validates (the one place), and a default list is a copy
    c2 = copy.deepcopy(cfg)
    assert schema_problems(c2) == [] and c2 == filled
    c2["statistics"]["adjust"].append("bh")
    assert apply_defaults(copy.deepcopy(cfg))["statistics"]["adjust"] == ["holm"]


def test_config_yaml_states_the_schema_defaults_it_repeats():
    """Where config.yaml documents a key that has a schema default, the two agree (one value, written twice
    only as documentation) - else a user deleting the line would silently change the study."""
    schema = load_yaml(SCHEMA_DIR / "config.schema.yaml")
    cfg = repo_config()
    for path, default in schema_defaults(schema).items():
        node = cfg
        for part in path:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            # the demo study's own choices, where it departs from the schema's "off" defaults on purpose
            if not isinstance(default, dict) and path not in {("fusion", "deep"), ("fusion", "nested_cv"),
                                                              ("fusion", "clinical"), ("predict", "model", "study")}:
                assert node == default, f"config.yaml {'.'.join(path)} = {node!r}, schema default {default!r}"


def test_every_rule_names_the_conda_env():
    """Every rule that runs a command (shell:) names envs/ccgrade.yaml, those made in loops included; target
    rules without a command need none (snakemake --lint, tested below, says the same)."""
    for f in RULES:
        text = f.read_text()
        n_env = len(re.findall(r'^\s+conda:\n\s+"\.\./\.\./envs/ccgrade\.yaml"$', text, re.M))
        n_shell = len(re.findall(r"^\s+shell:$", text, re.M))
        assert n_env == n_shell, f"{f.name}: {n_shell} rules with a command, {n_env} with the conda env"
    assert len(re.findall(r"^\s+shell:$", (REPO / "workflow/rules/train.smk").read_text(), re.M)) == 6


def pins(path) -> dict[str, str]:
    out = {}
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, ver = line.split("==")
            out[name.strip().lower()] = ver.strip()
    return out


def test_conda_env_pins_every_runtime_requirement():
    env = yaml.safe_load((REPO / "envs" / "ccgrade.yaml").read_text())
    conda_pins, pip_pins = {}, {}
    for d in env["dependencies"]:
        if isinstance(d, dict):
            pip_pins.update(pins_from(d["pip"]))
        else:
            name, _, ver = d.partition("=")
            conda_pins[name.lower()] = ver.lstrip("=")
    want = {**pins("envs/requirements.txt"), **pins("envs/requirements-radiomics.txt")}
    got = {**pip_pins, **conda_pins}
    assert {k: got.get(k) for k in want} == want
    assert conda_pins["python"] == "3.11"
    test_only = pins("envs/requirements-test.txt")
    assert not set(test_only) & set(want), "test-only packages stay out of the runtime environments"
    assert {"pytest", "hypothesis", "nibabel", "snakefmt"} <= set(test_only)
    # README command 1 ends with `snakemake --report`, which imports pygments: a runtime pin, not one that only
    # pytest's dependencies bring into the test venv
    assert "pygments" in want


def pins_from(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        if "==" in line:
            name, ver = line.split("==")
            out[name.strip().lower()] = ver.strip()
    return out


def test_every_imported_third_party_package_is_pinned():
    """Each top-level import of the package resolves to a distribution pinned in envs/requirements*.txt."""
    import ast
    from importlib import metadata

    runtime = {**pins("envs/requirements.txt"), **pins("envs/requirements-radiomics.txt")}
    dists = metadata.packages_distributions()
    stdlib = __import__("sys").stdlib_module_names
    missing = set()
    for f in (REPO / "workflow" / "src" / "ccgrade").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for n in names:
                top = n.split(".")[0]
                if top in stdlib or top == "ccgrade":
                    continue
                for d in dists.get(top, [top]):
                    if d.lower() not in runtime:
                        missing.add(f"{top} ({d}) in {f.name}")
    assert not missing, sorted(missing)


def test_snakemake_lint_is_clean(tmp_path):
    """`snakemake --lint` on the demo study: no finding (it exits 1 on any)."""
    import subprocess
    import sys
    from pathlib import Path

    snakemake = Path(sys.executable).with_name("snakemake")
    r = subprocess.run([str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                        "--lint", "text"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "in a good condition" in r.stdout + r.stderr


def test_rule_files_are_snakefmt_formatted():
    import subprocess
    import sys
    from pathlib import Path

    snakefmt = Path(sys.executable).with_name("snakefmt")
    r = subprocess.run([str(snakefmt), "--check", "--config", str(REPO / "pyproject.toml"), str(REPO / "Snakefile"),
                        str(REPO / "workflow" / "rules")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "run `.venv/bin/snakefmt Snakefile workflow/rules`:\n" + r.stdout + r.stderr
