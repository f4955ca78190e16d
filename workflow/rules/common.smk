import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The configuration is validated before any job is scheduled; a wrong key, type or
# value stops here with a message naming it.
validate(config, "../schemas/config.schema.yaml")

SRC = Path(workflow.basedir) / "src" / "oacl"

# `oacl` of the Python that runs Snakemake (a venv need not be activated); under
# --sdm conda the rule's environment comes first on PATH and provides its own.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]

MODEL_RE = r"[a-z]+-[a-z_]+-s[0-9]+"

wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    method=r"[a-z]+",
    variant=r"[a-z_]+",
    seed=r"[0-9]+",
    model=MODEL_RE,
    cam=r"[A-Za-z0-9_]+",
    shard=r"[0-9]+",


def _fail(msg):
    raise WorkflowError(f"config.yaml: {msg}")


# ------------------------------------------------------------- cross-checks
for _name, _exp in config["experiments"].items():
    if _exp["dataset"] not in config["datasets"]:
        _fail(f"experiments.{_name}.dataset: unknown dataset {_exp['dataset']!r} "
              f"(datasets: {sorted(config['datasets'])})")
    if any(v.endswith("_cam") for v in _exp["variants"]):
        for _key in ("cam_model", "cam"):
            if _key not in _exp:
                _fail(f"experiments.{_name}.{_key} is required for *_cam variants")
        if _exp["cam"] not in config["cam"]["configs"]:
            _fail(f"experiments.{_name}.cam: unknown CAM configuration {_exp['cam']!r} "
                  f"(cam.configs: {sorted(config['cam']['configs'])})")
for _ds, _loc in config.get("localization", {}).items():
    if _ds not in config["datasets"]:
        _fail(f"localization.{_ds}: unknown dataset")
    for _cam in _loc["cams"]:
        if _cam not in config["cam"]["configs"]:
            _fail(f"localization.{_ds}.cams: unknown CAM configuration {_cam!r}")


def cfg_json(d):
    """A config section as JSON for `--cfg` (quoted in shell with :q)."""
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def code(*patterns):
    """src/oacl modules a rule depends on: editing one reruns that rule's jobs."""
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
        f"results/{stage}/{dataset}/{model}/{cam}/{stem}_{i}.parquet" for i in range(n_shards())
    ]


def models_of(exp):
    return [
        f"{m}-{v}-s{s}" for m in exp["methods"] for v in exp["variants"] for s in exp["seeds"]
    ]


def all_targets():
    targets = []
    for exp in config["experiments"].values():
        ds = exp["dataset"]
        for model in models_of(exp):
            targets.append(model_path(ds, model))
            for ev in exp.get("evaluate", ["linear", "shift"]):
                targets.append(f"results/eval/{ds}/{model}/{ev}.json")
    for ds, loc in config.get("localization", {}).items():
        for cam in loc["cams"]:
            targets.append(f"results/eval/{ds}/{loc['model']}/localization_{cam}.json")
    targets.append("results/report.html")
    return targets


# ------------------------------------------------------------- resources
# Defaults sized for the embedded scenes; override per site with
# --set-resources or in a profile. `attempt` grows memory and time on retries.
RES = config.get("resources", {})


def res(stage, key, default):
    return RES.get(stage, {}).get(key, default)
