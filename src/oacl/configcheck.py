"""The workflow configuration, checked whole before any job is scheduled.

Three steps, each failing with the config file, line and key it is about:

1. ``load_config_files``: every YAML file parses and holds a mapping (an empty file or
   a syntax error names the file and line instead of Snakemake's generic message);
2. ``check_config``: the merged config against ``workflow/schemas/config.schema.yaml``,
   in which every stage section (``pretrain`` and ``experiments.*.pretrain``,
   ``cam.configs.*``, ``refine``, ``evaluate.*``, ``report``, ``datasets.*``) is
   *generated* from that stage's ``DEFAULTS``: a key the stage does not know, or a value
   of another type than its default, is rejected; a stage's ``CHOICES`` (beside its
   DEFAULTS, nested like them) are the enums of those keys. The hand-written schema only
   adds ranges and other enums for named keys (and a key named there must exist in
   DEFAULTS, so the two cannot drift). DEFAULTS and CHOICES are read from each stage's
   light parameters module (``STAGES``: oacl.<stage>.params, no torch), so checking a
   config, as every Snakemake start does, imports no torch;
3. ``cross_check``: references between sections (datasets, CAM configurations, and that
   every model the DAG trains is one that an experiment lists).
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Iterable
from pathlib import Path

import yaml

from . import variants
from .params import deep_merge, drop_null_entries, merge_params

# $defs name in the schema -> (module, keys the rule sets itself: a config value there
# would be overwritten without a word, so it is not accepted)
STAGES = {
    "pretrain": ("oacl.train.params", ("method", "variant", "seed")),
    "cam_config": ("oacl.cam.params", ("device",)),
    "refine": ("oacl.refine.params", ()),
    "eval_linear": ("oacl.evaluate.params:linear", ("device",)),
    "eval_shift": ("oacl.evaluate.params:shift", ("linear.device",)),
    "eval_localization": ("oacl.evaluate.params:localization", ()),
    "report": ("oacl.report.params", ()),
}


# where a stage key that the rule sets itself comes from
RULE_SET = {
    "method": "experiments.*.methods",
    "variant": "experiments.*.variants",
    "seed": "experiments.*.seeds",
    "device": "the top-level `device`",
}


# top-level keys that were renamed -> their new name (named in the error)
RENAMED = {"localization": "localization_tables"}


class ConfigError(ValueError):
    """The configuration is wrong; the message names file, line and key where known."""


# --------------------------------------------------------------------------- files


def load_config_files(paths: Iterable) -> list[tuple[Path, yaml.Node | None]]:
    """Parse each config file; (path, node tree) pairs for locating keys later."""
    out = []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read config file ({exc.strerror}){_target_hint(path)}"
            ) from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc)
            context = getattr(exc, "context", None)
            raise ConfigError(
                f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "")
            ) from None
        if data is None:
            raise ConfigError(f"{path}:1: config file is empty (expected a mapping of sections)")
        _no_duplicate_keys(path, node)
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}:1: config file holds a {type(data).__name__}, expected a mapping of sections"
            )
        out.append((path, node))
    return out


def _target_hint(path: Path) -> str:
    """For a missing file that looks like no config file: Snakemake reads every word after
    --configfile as one, so a target given after it arrives here."""
    if path.exists() or path.suffix.lower() in (".yaml", ".yml", ".json"):
        return ""
    return (
        f"; if {str(path)!r} is a Snakemake target, give targets before --configfile "
        "(snakemake TARGET --configfile FILE): every word after it is read as a config file"
    )


def _no_duplicate_keys(path: Path, node) -> None:
    """A key given twice in one mapping is an error naming both lines (YAML parsers,
    Snakemake's too, keep the last one and drop the first without a word)."""
    stack = [(node, [])]
    while stack:
        node, where = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend((v, [*where, str(i)]) for i, v in enumerate(node.value))
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                if key in first:
                    name = ".".join([*where, key])
                    raise ConfigError(
                        f"{path}:{k.start_mark.line + 1}: duplicate key {name!r} (first at line "
                        f"{first[key]}); YAML would keep only the last, silently dropping the first"
                    )
                first[key] = k.start_mark.line + 1
            stack.append((v, [*where, str(key)]))


def locate(key_path: list, files: list[tuple[Path, yaml.Node | None]]) -> str | None:
    """'file:line' of the last file (the one that wins the merge) that sets ``key_path``,
    or of the deepest parent it sets."""
    best = None
    for path, node in files:
        depth, line = 0, None
        for key in key_path:
            if not isinstance(node, yaml.MappingNode):
                break
            for k, v in node.value:
                if k.value == str(key):
                    node, line, depth = v, k.start_mark.line + 1, depth + 1
                    break
            else:
                break
        if line is not None and (best is None or depth >= best[0]):
            best = (depth, str(path) if isinstance(path, CommandLine) else f"{path}:{line}")
    return best[1] if best else None


class CommandLine:
    """Where values given with Snakemake's --config come from, in place of a file path."""

    def __str__(self) -> str:
        return "command line (--config)"


def _typed(value):
    """A --config leaf read as YAML reads it in a file ('2' -> 2, 'true' -> True);
    a string that YAML would turn into a mapping or list stays a string."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return value if isinstance(parsed, (dict, list)) else parsed
    return value


def command_line_config(given: dict) -> tuple[dict, tuple[CommandLine, yaml.Node]]:
    """Snakemake's --config values with types, and their origin for locate(). Snakemake
    parses a nested value (`--config 'pretrain={epochs: 2}'`) with YAML's BaseLoader, so
    every leaf is a string ('2'); read here as a config file would read it."""
    typed = _typed(dict(given))
    return typed, (CommandLine(), yaml.compose(yaml.safe_dump(typed)))


# --------------------------------------------------------------------------- schema


def _value_schema(val) -> dict:
    if isinstance(val, bool):
        return {"type": "boolean"}
    if isinstance(val, int):
        return {"type": "integer"}
    if isinstance(val, float):
        return {"type": "number"}
    if isinstance(val, str):
        return {"type": "string"}
    if isinstance(val, dict):
        return schema_from_defaults(val) if val else {"type": "object"}
    if isinstance(val, (list, tuple)):
        items = [_value_schema(v) for v in val]
        kinds = {i.get("type") for i in items}
        if kinds == {"integer", "number"}:
            return {"type": "array", "items": {"type": "number"}}
        if len(kinds) == 1 and None not in kinds:
            return {"type": "array", "items": items[0]}
        return {"type": "array"}
    return {}  # None: any value (the hand-written schema narrows it)


def schema_from_defaults(
    defaults: dict, hand: dict | None = None, drop: Iterable[str] = (), where: str = ""
) -> dict:
    """A JSON schema accepting exactly the keys of ``defaults``, each of its default's type,
    with the constraints of the hand-written ``hand`` schema on top (its ``type`` wins)."""
    hand = hand or {}
    hand_props = hand.get("properties", {})
    drift = sorted(set(hand_props) - set(defaults))
    if drift:
        raise ConfigError(
            f"schema {where or '?'}: constraints for keys not in the stage's DEFAULTS: {drift}"
        )
    drop = list(drop)
    props = {}
    for key, val in defaults.items():
        if key in drop:
            continue
        sub_drop = [d.split(".", 1)[1] for d in drop if d.startswith(key + ".")]
        h = hand_props.get(key, {})
        if isinstance(val, dict) and val:
            props[key] = {
                **{k: v for k, v in h.items() if k != "properties"},
                **schema_from_defaults(val, h, sub_drop, f"{where}.{key}"),
            }
        else:
            props[key] = {**_value_schema(val), **h}
    out = {k: v for k, v in hand.items() if k != "properties"}
    out.update(type="object", properties=props, additionalProperties=False)
    return out


def _stage_dict(module: str, name: str) -> dict:
    """``module``'s dict ``name`` (DEFAULTS, CHOICES); ``module:section``: its entry
    ``section`` (a params module holding several config sections, oacl.evaluate.params)."""
    module, _, section = module.partition(":")
    d = getattr(importlib.import_module(module), name, {})
    return d.get(section, {}) if section else d


def _defaults(module: str) -> dict:
    return copy.deepcopy(_stage_dict(module, "DEFAULTS"))


def _set_enums(schema: dict, choices: dict) -> None:
    """The enums of ``schema``'s properties from a stage's CHOICES (nested like its
    DEFAULTS); a key the rule sets itself (dropped from the schema) is skipped."""
    props = schema["properties"]
    for key, values in choices.items():
        if key not in props:
            continue
        if isinstance(values, dict):
            _set_enums(props[key], values)
        else:
            props[key]["enum"] = list(values)


def dataset_module(kind: str) -> str:
    """The module that builds datasets of type ``kind`` (oacl.data.scenes, ...readers.coco)."""
    from .data.prepare import resolve_params

    return resolve_params({"type": kind})[2].__name__


def dataset_defaults(kind: str) -> dict:
    return _defaults(dataset_module(kind))


def full_schema(schema_path) -> dict:
    """The config schema with every stage section generated from its DEFAULTS."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    defs = schema.setdefault("$defs", {})
    for name, (module, drop) in STAGES.items():
        defs[name] = schema_from_defaults(_defaults(module), defs.get(name), drop, name)
        # a stage's CHOICES (the values its check accepts) are the enums: one definition
        _set_enums(defs[name], _stage_dict(module, "CHOICES"))
    # datasets: one generated schema per type, chosen by the entry's `type`
    ds = schema["properties"]["datasets"]["additionalProperties"]
    branches = []
    for kind in ds["properties"]["type"]["enum"]:
        name = f"data_{kind}"
        defs[name] = schema_from_defaults(dataset_defaults(kind), defs.get(name), (), name)
        branches.append(
            {
                "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                "then": {"$ref": f"#/$defs/{name}"},
            }
        )
    ds["allOf"] = branches
    # the variant names and model-name patterns are oacl.variants', the methods those of
    # the pretrain stage's CHOICES (one definition)
    exp = schema["properties"]["experiments"]["additionalProperties"]["properties"]
    exp["methods"]["items"]["enum"] = list(_stage_dict(STAGES["pretrain"][0], "CHOICES")["method"])
    exp["variants"]["items"]["enum"] = list(variants.NAMES)
    exp["cam_model"]["pattern"] = variants.model_pattern()
    loc = schema["properties"]["localization_tables"]["additionalProperties"]["properties"]
    for key, method in (("model", None), ("classifier_model", "supervised")):
        pattern = variants.model_pattern(method) if method else variants.model_pattern()
        one = {"type": "string", "pattern": pattern}  # one name, or a list of such names
        many = {"type": "array", "items": one, "minItems": 1, "uniqueItems": True}
        loc[key] = {"anyOf": [one, many]}
    return schema


def _unknown_keys(err) -> list[str]:
    if err.validator != "additionalProperties" or not isinstance(err.instance, dict):
        return []
    known = err.schema.get("properties", {})
    return sorted(str(k) for k in err.instance if k not in known)


def _message(err) -> str:
    msg = err.message
    if err.validator == "additionalProperties" and isinstance(err.schema.get("properties"), dict):
        msg += f" (known: {', '.join(sorted(err.schema['properties']))})"
    return msg


@functools.lru_cache(maxsize=4)
def _validator(schema_path: str, mtime: float):
    import jsonschema

    return jsonschema.Draft202012Validator(full_schema(schema_path))


def check_config(config: dict, schema_path, files=()) -> None:
    """Validate the merged config; one ConfigError listing every problem found."""
    validator = _validator(str(schema_path), Path(schema_path).stat().st_mtime)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for err in errors[:12]:
            path, msg = list(err.absolute_path), _message(err)
            extra = _unknown_keys(err)
            if extra:  # name the unknown key itself, and point at its line
                path, msg = (
                    path + [extra[0]],
                    "unknown key" + msg[msg.index(" (known") :]
                    if " (known" in msg
                    else "unknown key",
                )
                if extra[0] in RULE_SET and len(path) > 1:
                    msg = f"not settable here: each job takes it from {RULE_SET[extra[0]]}"
                if extra[0] in RENAMED and len(path) == 1:
                    msg = f"renamed to {RENAMED[extra[0]]}"
                if len(extra) > 1:
                    msg += f"; also unknown: {', '.join(extra[1:])}"
            key = ".".join(str(p) for p in path) or "(top level)"
            loc = locate(path, list(files))
            lines.append(f"  {loc + ': ' if loc else ''}{key}: {msg}")
        more = f"\n  ... and {len(errors) - 12} more" if len(errors) > 12 else ""
        raise ConfigError("invalid configuration (nothing was run):\n" + "\n".join(lines) + more)


# --------------------------------------------------------------------------- cross-checks


def models_of(exp: dict) -> list[str]:
    """The models an experiment trains (every method x variant x seed)."""
    return [
        variants.model_name(m, v, s)
        for m in exp["methods"]
        for v in exp["variants"]
        for s in exp["seeds"]
    ]


def cross_check(config: dict) -> None:
    """References between sections; a model outside every experiment is an error (it would
    be trained silently, with the top-level pretrain settings). Also the value ranges of
    ``scenes`` datasets, which the type-only dataset schema cannot see."""

    def fail(msg):
        raise ConfigError(f"invalid configuration (nothing was run): {msg}")

    datasets, cams = config["datasets"], config["cam"]["configs"]
    from .data import scenes  # here, not at the top: it imports cv2

    for name, ds in datasets.items():
        if isinstance(ds, dict) and ds.get("type") == "scenes":
            # value ranges (e.g. bg_drift in [0, 1]); the schema checks only the types. Other
            # types check their params when their job runs (composite needs its folders).
            try:
                scenes.check_params(merge_params(scenes.DEFAULTS, ds, where=f"datasets.{name}"))
            except ValueError as exc:
                fail(f"datasets.{name}: {exc}")
    trained = {}  # dataset -> models some experiment lists
    for name, exp in config["experiments"].items():
        if exp["dataset"] not in datasets:
            fail(
                f"experiments.{name}.dataset: unknown dataset {exp['dataset']!r} "
                f"(datasets: {sorted(datasets)})"
            )
        trained.setdefault(exp["dataset"], set()).update(models_of(exp))
        for tds in exp.get("transfer", []):
            if tds not in datasets:
                fail(f"experiments.{name}.transfer: unknown dataset {tds!r}")
    for name, exp in config["experiments"].items():
        if any(variants.uses_cam(v) for v in exp["variants"]):
            for key in ("cam_model", "cam"):
                if key not in exp:
                    fail(f"experiments.{name}.{key} is required for *_cam variants")
            if exp["cam"] not in cams:
                fail(
                    f"experiments.{name}.cam: unknown CAM configuration {exp['cam']!r} "
                    f"(cam.configs: {sorted(cams)})"
                )
            if exp["cam_model"] not in trained[exp["dataset"]]:
                fail(
                    f"experiments.{name}.cam_model: {exp['cam_model']!r} is trained by no "
                    f"experiment on {exp['dataset']!r} (add its method/variant/seed to one; "
                    f"listed: {sorted(trained[exp['dataset']])})"
                )
    for ds, loc in config.get("localization_tables", {}).items():
        if ds not in datasets:
            fail(f"localization_tables.{ds}: unknown dataset")
        for cam in loc["cams"]:
            if cam not in cams:
                fail(f"localization_tables.{ds}.cams: unknown CAM configuration {cam!r}")
            # the classifier Grad-CAM reference runs on the supervised model named here (its
            # only trigger: listing it is the request to train it)
            if cams[cam].get("method") == "classifier" and "classifier_model" not in loc:
                fail(
                    f"localization_tables.{ds}.cams: {cam!r} is a classifier CAM; set "
                    f"localization_tables.{ds}.classifier_model (a supervised-* model)"
                )
        for model in variants.as_list(loc["model"]):
            if model not in trained.get(ds, set()):
                fail(
                    f"localization_tables.{ds}.model: {model!r} is trained by no experiment "
                    f"on {ds!r} (add its method/variant/seed to one; listed: "
                    f"{sorted(trained.get(ds, []))})"
                )


def check_paths(config: dict, files=(), skip=()) -> None:
    """Every dataset root and annotation file exists (oacl.data.prepare.missing_paths),
    checked when the run is planned rather than when prepare_data runs on the cluster.
    ``skip``: paths the workflow makes itself (fetched sources)."""
    from .data.prepare import missing_paths  # here, not at the top: readers import cv2

    lines = []
    for name, ds in config["datasets"].items():
        for key, problem in missing_paths(ds, skip):
            loc = locate(["datasets", name, key], list(files))
            lines.append(f"  {loc + ': ' if loc else ''}datasets.{name}.{key}: {problem}")
    if lines:
        raise ConfigError(
            "dataset paths not found (nothing was run; if they exist only on the compute "
            "nodes, skip this check: snakemake --config check_roots=false, "
            "oacl check-config --no-check-roots):\n" + "\n".join(lines)
        )


# --------------------------------------------------------------------------- oacl check-config


def merge_configs(files: list[Path]) -> dict:
    """The config Snakemake builds: each file deep-merged over the previous one, then the
    entries a preset sets to null removed from datasets/experiments/localization_tables."""
    config: dict = {}
    for path in files:
        config = deep_merge(config, yaml.safe_load(Path(path).read_text()))
    return drop_null_entries(config)


def _repo_file(*parts) -> Path:
    return Path(__file__).resolve().parents[2].joinpath(*parts)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "check-config",
        help="check config files as the workflow does, without Snakemake",
        description="Parse each file (a YAML error names file and line: for files given to "
        "snakemake with --configfile, Snakemake's own parser reports such errors first, "
        "without the line), merge them over the base config as Snakemake does and check "
        "the result against the schema and the cross-references.",
    )
    p.add_argument("configfiles", nargs="*", help="presets / overrides, merged in this order")
    p.add_argument(
        "--base",
        default=str(_repo_file("config.yaml")),
        help="base config (default: config.yaml of this checkout)",
    )
    p.add_argument("--schema", default=str(_repo_file("workflow", "schemas", "config.schema.yaml")))
    p.add_argument(
        "--no-check-roots",
        dest="check_roots",
        action="store_false",
        help="do not check that dataset roots and annotation files exist (for paths that "
        "exist only on compute nodes)",
    )
    p.set_defaults(func=_run)


def _run(args) -> int:
    paths = [Path(args.base), *map(Path, args.configfiles)]
    files = load_config_files(paths)
    config = merge_configs(paths)
    check_config(config, args.schema, files)
    cross_check(config)
    if args.check_roots and config.get("check_roots", True):
        from .data import composite

        # composite's default folders are fetched by the workflow (rule fetch_source)
        fetched = (composite.DEFAULTS["foregrounds"], composite.DEFAULTS["backgrounds"])
        check_paths(config, files, skip=fetched)
    print(f"ok: {' + '.join(map(str, paths))}")
    return 0
