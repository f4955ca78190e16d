import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

# src/oacl of this checkout (common.smk lives in workflow/rules/); the config checks
# below import it, so they are the checkout's own
SRC = Path(workflow.current_basedir).parents[1] / "src" / "oacl"
if not (SRC / "artifacts.py").exists():
    raise WorkflowError(f"oacl sources not found at {SRC}")
sys.path.insert(0, str(SRC.parent))
from oacl import codedeps, variants
from oacl.configcheck import (
    ConfigError,
    check_config,
    check_paths,
    command_line_config,
    cross_check,
    dataset_module,
    load_config_files,
    models_of,
)
from oacl.device import gpu_request_errors
from oacl.params import deep_merge, drop_null_entries

# The base config sits beside the Snakefile (an absolute path: with --directory the
# working directory is elsewhere, and a missing relative configfile would be skipped
# without a word whenever --configfile is given). Each file is parsed by us first, so a
# YAML error or an empty file names the file and line.
BASE_CONFIG = str(SRC.parents[1] / "config.yaml")
try:
    CONFIG_FILES = load_config_files([BASE_CONFIG, *workflow.overwrite_configfiles])
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# --config KEY=VALUE: Snakemake reads the leaves of a nested value as strings
# ('pretrain={epochs: 2}' gives epochs '2'); they are typed as in a config file, before
# `configfile:` merges them over the files, and errors about them name the command line.
if workflow.config_settings.config:
    CLI_CONFIG, CLI_ORIGIN = command_line_config(workflow.config_settings.config)
    update_config(workflow.config_settings.overwrite_config, CLI_CONFIG)
    CONFIG_FILES.append(CLI_ORIGIN)


configfile: BASE_CONFIG


# A preset given with --configfile is merged over config.yaml; it removes the default's
# datasets, experiments or localization_tables entries by setting them to null.
drop_null_entries(config)

# The whole configuration is checked before any job is scheduled: every key of every
# stage section (generated from the stages' DEFAULTS), types, ranges, enums, and the
# references between sections. A problem stops here naming file, line and key.
SCHEMA = str(Path(workflow.current_basedir).parent / "schemas" / "config.schema.yaml")
try:
    check_config(config, SCHEMA, CONFIG_FILES)
    cross_check(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, SCHEMA)  # fills the schema's defaults

# `oacl` of the Python that runs Snakemake (a venv need not be activated); under
# --sdm conda the rule's environment comes first on PATH and provides its own.
# OACL_REPO: the checkout, for the envs' post-deploy scripts, which Snakemake runs from
# a copy under .snakemake/conda/ (so they cannot find it beside themselves).
os.environ.update(
    PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    OACL_REPO=str(SRC.parents[1]),
)


def cfg_json(d):
    """A config section as JSON for `--cfg` (quoted in shell with :q)."""
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def list_flag(flag, paths):
    """`FLAG P1 P2 ...` (shell-quoted) for a list option of `oacl`, or "" for no paths.
    Every list option of oacl takes several values after one flag (and accumulates a
    repeated flag); the rules write one flag with all values."""
    paths = [str(p) for p in paths]
    return " ".join([flag, *map(shlex.quote, paths)]) if paths else ""


def code(*entries):
    """The src/oacl files that a rule runs, editing one reruns its jobs; the transitive
    imports of its entry modules, read from the sources (src/oacl/codedeps.py). Relative
    to the working directory (Snakemake records input paths: absolute ones would make a
    moved or copied checkout, or a git worktree, rerun every job)."""
    return [os.path.relpath(SRC / f) for f in codedeps.code_of(*entries, package=SRC)]


# ------------------------------------------------------------- paths
# Every file and folder the rules name, one template each: rules use them with their
# {wildcards} left for Snakemake, functions fill them with path(). A job's log and
# benchmark are named <rule>/<job> (<job>: its wildcards as a path), or <rule> for a
# rule of one job.
# Every output lies under the config's `results` folder ("results"; a preset that changes
# a dataset or a model's recipe sets its own, e.g. smoke.yaml results/smoke, so it never
# rewrites the default's files). Fetched sources are the same for every preset: shared.
RESULTS = config["results"].rstrip("/")
PATHS = {
    "data": "{results}/data/{dataset}",
    "manifest": "{results}/data/{dataset}/manifest.parquet",
    "source": "results/sources/{source}",
    "model": "{results}/models/{dataset}/{model}/model.pt",
    "masks": "{results}/cam/{dataset}/{model}/{cam}/masks_{shard}.parquet",
    "boxes": "{results}/refine/{dataset}/{model}/{cam}/boxes_{shard}.parquet",
    "eval": "{results}/eval/{dataset}/{model}/{evaluation}.json",
    "features": "{results}/features/{dataset}/{model}",
    "transfer_features": "{results}/features/{dataset}/{model}/transfer_{target}",
    "report": "{results}/report.html",
    "log": "{results}/logs/{name}.log",
    "benchmark": "{results}/benchmarks/{name}.tsv",
}
PATHS = {k: v.replace("{results}", RESULTS) for k, v in PATHS.items()}


class _Wildcards(dict):
    def __missing__(self, key):
        return f"{{{key}}}"  # not given: stays a wildcard


def path(kind, **values):
    """PATHS[kind] with the given {wildcards} filled in (each once: a value may itself
    be a wildcard pattern, "localization_{cam}"); the others are kept."""
    return PATHS[kind].format_map(_Wildcards(values))


def log_of(rule, job=None):
    return path("log", name=f"{rule}/{job}" if job else rule)


def benchmark_of(rule, job=None):
    return path("benchmark", name=f"{rule}/{job}" if job else rule)


def manifest(dataset):
    return path("manifest", dataset=dataset)


def model_path(dataset, model):
    return path("model", dataset=dataset, model=model)


def experiments_of(dataset):
    return [e for e in config["experiments"].values() if e["dataset"] == dataset]


def experiment_for(dataset, variant, method):
    """The first experiment on `dataset` that trains `variant` with `method` (its CAM
    settings and pretrain overrides apply; a supervised and a MoCo baseline on the same
    dataset may come from two experiments with different overrides)."""
    for exp in experiments_of(dataset):
        if variant in exp["variants"] and method in exp.get("methods", []):
            return exp
    return {"dataset": dataset, "pretrain": {}}


def n_shards():
    return config["cam"].get("n_shards", 2)


def cam_shards(kind, dataset, model, cam):
    """Every shard of a CAM run: kind "masks" (rule cam) or "boxes" (rule refine)."""
    return [
        path(kind, dataset=dataset, model=model, cam=cam, shard=i)
        for i in range(n_shards())
    ]


def all_targets():
    targets = []
    for exp in config["experiments"].values():
        ds = exp["dataset"]
        for model in models_of(exp):
            targets.append(model_path(ds, model))
            for ev in exp.get("evaluate", ["linear", "shift"]):
                targets.append(path("eval", dataset=ds, model=model, evaluation=ev))
        for tds in exp.get("transfer", []):
            for model in models_of(exp):
                targets.append(
                    path("eval", dataset=ds, model=model, evaluation=f"transfer_{tds}")
                )
    for ds, loc in config.get("localization_tables", {}).items():
        for cam in loc["cams"]:
            for model in localization_models(loc, cam):
                targets.append(
                    path(
                        "eval",
                        dataset=ds,
                        model=model,
                        evaluation=f"localization_{cam}",
                    )
                )
    # every shard is requested itself: Snakemake does not rebuild a lost intermediate
    # file whose consumers are up to date, so a lost shard would stay lost and readers
    # of results/{cam,refine}/ (DuckDB globs, oacl inspect) would see part of the data
    for ds, model, cam in cam_sets():
        targets += cam_shards("masks", ds, model, cam) + cam_shards(
            "boxes", ds, model, cam
        )
    targets.append(path("report"))
    return targets


def localization_models(loc, cam):
    """The models a localisation CAM configuration runs on: the supervised classifier(s)
    for Grad-CAM (method: classifier), else the SSL model(s) of the table."""
    if config["cam"]["configs"][cam].get("method") == "classifier":
        return variants.as_list(loc["classifier_model"])
    return variants.as_list(loc["model"])


# ------------------------------------------------------------- resources
# Defaults sized for the embedded scenes; override per site with
# --set-resources or in a profile. `attempt` grows memory and time on retries.
RES = config.get("resources", {})
GROWN = ("mem_mb", "runtime")  # grow with `attempt`: a retry gets 2x, 3x ...


def res_value(stage, key, default):
    """resources.<stage>.<key> of the config, else `default`."""
    return RES.get(stage, {}).get(key, default)


def _grown(value):
    return lambda w, attempt: value * attempt


def res(stage, **defaults):
    """The resources of a `stage` job that the config's resources.<stage> may set:
    each key's value there, else its default here; mem_mb and runtime (minutes) grow
    with the attempt. Fixed resources are written beside, `**res(...), nodes=1`."""
    out = {}
    for key, default in defaults.items():
        value = res_value(stage, key, default)
        out[key] = _grown(value) if key in GROWN else value
    return out


# ------------------------------------------------------------- data rules
def data_code(wildcards):
    # `oacl data prepare` runs prepare.py and the module of the dataset's type
    kind = config["datasets"][wildcards.dataset]["type"]
    return code("oacl.data.cli", "oacl.data.prepare", dataset_module(kind))


# composite datasets whose roots are left at these defaults get them from
# `oacl data fetch` (rule fetch_source), so a fresh clone runs the preset unaided
FETCHED_ROOTS = {
    "foregrounds": path("source", source="openclipart"),
    "backgrounds": path("source", source="wallpapers"),
}


# dataset roots and annotation files exist (else the run would fail only when
# prepare_data runs, on a cluster after queueing); `--config check_roots=false` skips it
# for paths that exist only on the compute nodes
if config["check_roots"]:
    try:
        check_paths(config, CONFIG_FILES, skip=set(FETCHED_ROOTS.values()))
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None


def data_sources(wildcards):
    ds = config["datasets"][wildcards.dataset]
    if ds["type"] != "composite":
        return []
    return [
        root
        for key, root in FETCHED_ROOTS.items()
        if str(ds.get(key, root)).rstrip("/") == root
    ]


# ------------------------------------------------------------- pretrain rules
def pretrain_cfg(w):
    exp = experiment_for(w.dataset, w.variant, w.method)
    # key by key at every depth: an experiment setting moco.queue_size keeps moco.momentum
    cfg = deep_merge(config["pretrain"], exp.get("pretrain", {}))
    cfg.update(method=w.method, variant=w.variant, seed=int(w.seed))
    return cfg


def pretrain_inputs(w):
    """Manifest, plus the CAM box/mask shards of the source model the variant reads."""
    inputs = {"manifest": manifest(w.dataset)}
    spec = variants.get(w.variant)
    if spec.cam_boxes:
        exp = experiment_for(w.dataset, w.variant, w.method)
        inputs["boxes"] = cam_shards("boxes", w.dataset, exp["cam_model"], exp["cam"])
        if spec.cam_masks:
            inputs["masks"] = cam_shards(
                "masks", w.dataset, exp["cam_model"], exp["cam"]
            )
    return inputs


def pretrain_gpus(w):
    return int(pretrain_cfg(w).get("gpus", 0))


def pretrain_estimate(w):
    """Minutes a pretrain job needs: the per-epoch estimate x epochs."""
    epochs = int(pretrain_cfg(w).get("epochs", 1))
    return int(10 + res_value("pretrain", "runtime_per_epoch", 2) * epochs)


# Walltime chunks (docs/cluster.md): with resources.pretrain.runtime_max (the
# partition's limit, minutes) a job that needs longer requests that limit, stops
# stop_margin_s before it with train_state.pt saved (`oacl pretrain --stop-after`, exit
# 75) and is retried, resuming, until done; resources.pretrain.chunk_s sets the chunk
# length in seconds directly (short-job queues, tests). The rule's retries then allow
# max_chunks runs.
def chunked():
    return bool(
        res_value("pretrain", "runtime_max", 0) or res_value("pretrain", "chunk_s", 0)
    )


def pretrain_runtime(w, attempt):
    # minutes, grown on retry (resume makes retries cheap); a chunked job keeps the limit
    need, cap = pretrain_estimate(w), res_value("pretrain", "runtime_max", 0)
    return cap if cap and need > cap else need * attempt


def pretrain_stop_after(w, attempt):
    """Seconds after which a job stops (0: never): the chunk length, or the runtime
    less a margin for saving the state and the job's start-up."""
    if res_value("pretrain", "chunk_s", 0):
        return int(res_value("pretrain", "chunk_s", 0))
    need, cap = pretrain_estimate(w), res_value("pretrain", "runtime_max", 0)
    if not cap or need <= cap:
        return 0
    runtime_s = 60 * cap
    return int(
        runtime_s - min(res_value("pretrain", "stop_margin_s", 300), runtime_s // 4)
    )


def pretrain_retries():
    """Runs a pretrain job may take: max_chunks when chunked, else the profile's retries.
    Inside a cluster job (the submitting Snakemake's remote copy) none: there a retry
    would run the next chunk in the same job and overrun its walltime; the submitting
    Snakemake retries by submitting a new job."""
    if workflow.remote_exec:
        return 0
    return res_value("pretrain", "max_chunks", 50) if chunked() else None


def job_device(gpus):
    """The --device of a job: one that requests GPUs runs on CUDA or fails (`auto` would
    fall back to the CPU unnoticed on a node without one)."""
    device = config.get("device", "auto")
    return "cuda" if device == "auto" and int(gpus) > 0 else device


def pretrain_cpus(w):
    # data-loader CPUs per GPU (DDP: all GPUs of one job on one node)
    return res_value("pretrain", "cpus_per_task", 2) * max(1, pretrain_gpus(w))


# ------------------------------------------------------------- cam rules
def cam_trains(dataset, model, cam):
    """Whether some CAM variant pretrains on these masks/boxes (then train images need them)."""
    return any(
        exp.get("cam_model") == model
        and exp.get("cam") == cam
        and any(variants.uses_cam(v) for v in exp["variants"])
        for exp in experiments_of(dataset)
    )


def cam_cfg(w):
    cfg = {"batch_size": config["cam"].get("batch_size", 64)}
    cfg.update(config["cam"]["configs"][w.cam])
    # masks wanted only by the localisation table: just the splits it scores (the
    # train split would triple the CAM and refine work for nothing)
    loc_splits = config.get("evaluate", {}).get("localization", {}).get("splits")
    if "splits" not in cfg and loc_splits and not cam_trains(w.dataset, w.model, w.cam):
        cfg["splits"] = list(loc_splits)
    return cfg


# ------------------------------------------------------------- report rules
def eval_report(json_path, caption):
    """An evaluation JSON registered for `snakemake --report` under its dataset, with
    the caption workflow/report/<caption>.rst."""
    return report(
        json_path,
        caption=f"../report/{caption}.rst",
        category="Evaluation {dataset}",
        subcategory=caption,
        labels={"model": "{model}", "evaluation": caption},
    )


def cam_sets():
    """(dataset, model, cam) of every ContraCAM run the config asks for."""
    sets = set()
    for exp in config["experiments"].values():
        if any(variants.uses_cam(v) for v in exp["variants"]):
            sets.add((exp["dataset"], exp["cam_model"], exp["cam"]))
    for ds, loc in config.get("localization_tables", {}).items():
        for cam in loc["cams"]:
            sets.update((ds, model, cam) for model in localization_models(loc, cam))
    return sorted(sets)


def report_inputs(w):
    """What the report shows, and nothing else: the config's models, eval JSONs and
    shards (`oacl report --inputs`; stale files of an older config are not read)."""
    return [t for t in all_targets() if t != path("report")]


# ------------------------------------------------------------- GPU requests
def gpu_counts():
    """{rule: {config key: GPUs per job}} of the rules that may use a GPU."""
    pretrain = {}
    for name, exp in config["experiments"].items():
        if "gpus" in exp.get("pretrain", {}):
            pretrain[f"experiments.{name}.pretrain.gpus"] = exp["pretrain"]["gpus"]
        else:
            pretrain["pretrain.gpus"] = config["pretrain"].get("gpus", 0)
    evaluate = {"evaluate.gpus": config["evaluate"].get("gpus", 0)}
    return {
        "pretrain": pretrain,
        "cam": {"cam.gpus": config["cam"].get("gpus", 0)},
        **dict.fromkeys(
            ["evaluate_linear", "evaluate_shift", "evaluate_transfer"], evaluate
        ),
    }


def check_gpu_requests():
    """A gpu_model (profile or --set-resources) beside 0 GPUs stops the run before any
    job: the Slurm plugin would ask for --gpus=<model>:0 (src/oacl/device.py)."""

    def raw(resources):
        return {k: getattr(v, "raw", v) for k, v in (resources or {}).items()}

    settings = workflow.resource_settings
    counts = gpu_counts()
    errors = gpu_request_errors(
        {r.name: counts.get(r.name, {}) for r in workflow.rules if r.shellcmd},
        {rule: raw(res) for rule, res in settings.overwrite_resources.items()},
        raw(settings.default_resources),
    )
    if errors:
        raise WorkflowError(
            "GPU request contradicts the config (nothing was run):\n  "
            + "\n  ".join(errors)
        )
