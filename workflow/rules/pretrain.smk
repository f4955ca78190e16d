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
            inputs["masks"] = cam_shards("masks", w.dataset, exp["cam_model"], exp["cam"])
    return inputs


def pretrain_gpus(w):
    return int(pretrain_cfg(w).get("gpus", 0))


def pretrain_runtime(w, attempt):
    # minutes: per-epoch estimate x epochs, grown on retry (resume makes retries cheap)
    epochs = int(pretrain_cfg(w).get("epochs", 1))
    return int(10 + res("pretrain", "runtime_per_epoch", 2) * epochs) * attempt


rule pretrain:
    input:
        unpack(pretrain_inputs),
        code=code(*SHARED_CODE, "models/*.py", "train/*.py", "refine/background.py"),
    output:
        model="results/models/{dataset}/{method}-{variant}-s{seed}/model.pt",
    params:
        cfg=lambda w: cfg_json(pretrain_cfg(w)),
        device=config.get("device", "auto"),
        boxes=lambda w, input: " ".join(f"--boxes {p}" for p in input.get("boxes", [])),
        masks=lambda w, input: " ".join(f"--masks {p}" for p in input.get("masks", [])),
        nproc=lambda w: max(1, pretrain_gpus(w)),
    log:
        "results/logs/pretrain/{dataset}/{method}-{variant}-s{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{dataset}/{method}-{variant}-s{seed}.tsv"
    threads: 2
    resources:
        gpu=pretrain_gpus,
        mem_mb=lambda w, attempt: res("pretrain", "mem_mb", 8000) * attempt,
        runtime=pretrain_runtime,
        cpus_per_task=lambda w: res("pretrain", "cpus_per_task", 2),
    shell:
        "oacl pretrain --cfg {params.cfg:q} --manifest {input.manifest:q}"
        " --out {output.model:q} {params.boxes} {params.masks}"
        " --device {params.device} --nproc {params.nproc} > {log:q} 2>&1"
