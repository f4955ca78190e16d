import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# A preset given with --configfile is merged over config.yaml; it removes the default's
# datasets, experiments or localization entries by setting them to null.
for _section in ("datasets", "experiments", "localization"):
    if isinstance(config.get(_section), dict):
        config[_section] = {k: v for k, v in config[_section].items() if v is not None}

# The configuration is validated before any job is scheduled; a wrong key, type or
# value stops here with a message naming it.
validate(config, "../schemas/config.schema.yaml")

# src/oacl of this checkout (common.smk lives in workflow/rules/)
SRC = Path(workflow.current_basedir).parents[1] / "src" / "oacl"
if not (SRC / "artifacts.py").exists():
    raise WorkflowError(f"oacl sources not found at {SRC}")

# `oacl` of the Python that runs Snakemake (a venv need not be activated); under
# --sdm conda the rule's environment comes first on PATH and provides its own.
os.environ.update(
    PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
)

MODEL_RE = r"[a-z]+-[a-z_]+-s[0-9]+"


def _fail(msg):
    raise WorkflowError(f"config.yaml: {msg}")


# ------------------------------------------------------------- cross-checks
for _name, _exp in config["experiments"].items():
    if _exp["dataset"] not in config["datasets"]:
        _fail(
            f"experiments.{_name}.dataset: unknown dataset {_exp['dataset']!r} "
            f"(datasets: {sorted(config['datasets'])})"
        )
    if any(v.endswith("_cam") for v in _exp["variants"]):
        for _key in ("cam_model", "cam"):
            if _key not in _exp:
                _fail(f"experiments.{_name}.{_key} is required for *_cam variants")
        if _exp["cam"] not in config["cam"]["configs"]:
            _fail(
                f"experiments.{_name}.cam: unknown CAM configuration {_exp['cam']!r} "
                f"(cam.configs: {sorted(config['cam']['configs'])})"
            )
    for _tds in _exp.get("transfer", []):
        if _tds not in config["datasets"]:
            _fail(f"experiments.{_name}.transfer: unknown dataset {_tds!r}")
for _ds, _loc in config.get("localization", {}).items():
    if _ds not in config["datasets"]:
        _fail(f"localization.{_ds}: unknown dataset")
    for _cam in _loc["cams"]:
        if _cam not in config["cam"]["configs"]:
            _fail(f"localization.{_ds}.cams: unknown CAM configuration {_cam!r}")
        if (
            config["cam"]["configs"][_cam].get("method") == "classifier"
            and "classifier_model" not in _loc
        ):
            _fail(
                f"localization.{_ds}.cams: {_cam!r} is a classifier CAM; "
                f"set localization.{_ds}.classifier_model (a supervised-* model)"
            )


def cfg_json(d):
    """A config section as JSON for `--cfg` (quoted in shell with :q)."""
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def code(*patterns):
    """The src/oacl modules a stage depends on (editing one reruns that stage's jobs)."""
    files = []
    for pat in patterns:
        files += sorted(str(p) for p in SRC.glob(pat))
    return files


SHARED_CODE = ["io.py", "artifacts.py", "params.py"]


def manifest(dataset):
    return f"results/data/{dataset}/manifest.parquet"


def model_path(dataset, model):
    return f"results/models/{dataset}/{model}/model.pt"


def split_model(model):
    method, variant, seed = model.rsplit("-", 2)
    return method, variant, int(seed[1:])


def experiments_of(dataset):
    return [e for e in config["experiments"].values() if e["dataset"] == dataset]


def experiment_for(dataset, variant):
    """The first experiment on `dataset` that trains `variant` (its CAM settings apply)."""
    for exp in experiments_of(dataset):
        if variant in exp["variants"]:
            return exp
    return {"dataset": dataset, "pretrain": {}}


def n_shards():
    return config["cam"].get("n_shards", 2)


def cam_shards(kind, dataset, model, cam):
    stage, stem = ("cam", "masks") if kind == "masks" else ("refine", "boxes")
    return [
        f"results/{stage}/{dataset}/{model}/{cam}/{stem}_{i}.parquet"
        for i in range(n_shards())
    ]


def models_of(exp):
    return [
        f"{m}-{v}-s{s}"
        for m in exp["methods"]
        for v in exp["variants"]
        for s in exp["seeds"]
    ]


def all_targets():
    targets = []
    for exp in config["experiments"].values():
        ds = exp["dataset"]
        for model in models_of(exp):
            targets.append(model_path(ds, model))
            for ev in exp.get("evaluate", ["linear", "shift"]):
                targets.append(f"results/eval/{ds}/{model}/{ev}.json")
        for tds in exp.get("transfer", []):
            for model in models_of(exp):
                targets.append(f"results/eval/{ds}/{model}/transfer_{tds}.json")
    for ds, loc in config.get("localization", {}).items():
        for cam in loc["cams"]:
            model = localization_model(loc, cam)
            targets.append(f"results/eval/{ds}/{model}/localization_{cam}.json")
    targets.append("results/report.html")
    return targets


def localization_model(loc, cam):
    """The model a localisation CAM configuration runs on: the supervised classifier
    for Grad-CAM (method: classifier), else the SSL model of the table."""
    if config["cam"]["configs"][cam].get("method") == "classifier":
        return loc["classifier_model"]
    return loc["model"]


# ------------------------------------------------------------- resources
# Defaults sized for the embedded scenes; override per site with
# --set-resources or in a profile. `attempt` grows memory and time on retries.
RES = config.get("resources", {})


def res(stage, key, default):
    return RES.get(stage, {}).get(key, default)


# ------------------------------------------------------------- data rules
def data_code(wildcards):
    kind = config["datasets"][wildcards.dataset]["type"]
    own = {
        "scenes": ["data/scenes.py"],
        "folder": ["data/folder.py"],
        "composite": ["data/composite.py", "data/scenes.py"],
    }.get(kind, [f"data/readers/{kind}.py"])
    return code(*SHARED_CODE, "data/prepare.py", "data/cli.py", *own)


# composite datasets whose roots are left at these defaults get them from
# `oacl data fetch` (rule fetch_source), so a fresh clone runs the preset unaided
FETCHED_ROOTS = {
    "foregrounds": "results/sources/openclipart",
    "backgrounds": "results/sources/wallpapers",
}


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
    exp = experiment_for(w.dataset, w.variant)
    cfg = {**config["pretrain"], **exp.get("pretrain", {})}
    cfg.update(method=w.method, variant=w.variant, seed=int(w.seed))
    return cfg


def pretrain_inputs(w):
    """Manifest, plus the CAM masks/boxes of the source model for *_cam variants."""
    inputs = {"manifest": manifest(w.dataset)}
    if w.variant.endswith("_cam"):
        exp = experiment_for(w.dataset, w.variant)
        inputs["boxes"] = cam_shards("boxes", w.dataset, exp["cam_model"], exp["cam"])
        if w.variant.startswith("bg_mixup"):
            inputs["masks"] = cam_shards(
                "masks", w.dataset, exp["cam_model"], exp["cam"]
            )
    return inputs


def pretrain_gpus(w):
    return int(pretrain_cfg(w).get("gpus", 0))


def pretrain_runtime(w, attempt):
    # minutes: per-epoch estimate x epochs, grown on retry (resume makes retries cheap)
    epochs = int(pretrain_cfg(w).get("epochs", 1))
    return int(10 + res("pretrain", "runtime_per_epoch", 2) * epochs) * attempt


# ------------------------------------------------------------- cam rules
def cam_trains(dataset, model, cam):
    """Whether some *_cam variant pretrains on these masks/boxes (then train images need them)."""
    return any(
        exp.get("cam_model") == model
        and exp.get("cam") == cam
        and any(v.endswith("_cam") for v in exp["variants"])
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
def report_inputs(w):
    return [t for t in all_targets() if t != "results/report.html"]
