rule evaluate_linear:
    input:
        checkpoint="results/models/{dataset}/{model}/model.pt",
        manifest="results/data/{dataset}/manifest.parquet",
        code=code("oacl.evaluate.cli", "oacl.evaluate.linear"),
    output:
        json="results/eval/{dataset}/{model}/linear.json",
    log:
        "results/logs/evaluate_linear/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/evaluate_linear/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: res("evaluate", "mem_mb", 4000) * attempt,
        runtime=lambda w, attempt: res("evaluate", "runtime", 30) * attempt,
        cpus_per_task=2,
    params:
        cfg=cfg_json(config.get("evaluate", {}).get("linear", {})),
        cache="results/features/{dataset}/{model}",
        device=config.get("device", "auto"),
    shell:
        "oacl evaluate linear --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --cache-dir {params.cache:q}"
        " --device {params.device} --out {output.json:q} > {log:q} 2>&1"


rule evaluate_shift:
    input:
        checkpoint="results/models/{dataset}/{model}/model.pt",
        manifest="results/data/{dataset}/manifest.parquet",
        # its features are cached and its lambda reused (same head): no double work
        linear="results/eval/{dataset}/{model}/linear.json",
        code=code("oacl.evaluate.cli", "oacl.evaluate.shift"),
    output:
        json="results/eval/{dataset}/{model}/shift.json",
    log:
        "results/logs/evaluate_shift/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/evaluate_shift/{dataset}/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: res("evaluate", "mem_mb", 4000) * attempt,
        runtime=lambda w, attempt: res("evaluate", "runtime", 30) * attempt,
        cpus_per_task=2,
    params:
        cfg=cfg_json(config.get("evaluate", {}).get("shift", {})),
        cache="results/features/{dataset}/{model}",
        device=config.get("device", "auto"),
    shell:
        "oacl evaluate shift --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --linear-json {input.linear:q} --cache-dir {params.cache:q}"
        " --device {params.device} --out {output.json:q} > {log:q} 2>&1"


rule evaluate_localization:
    input:
        manifest="results/data/{dataset}/manifest.parquet",
        masks=lambda w: cam_shards("masks", w.dataset, w.model, w.cam),
        boxes=lambda w: cam_shards("boxes", w.dataset, w.model, w.cam),
        code=code("oacl.evaluate.cli", "oacl.evaluate.localization"),
    output:
        json="results/eval/{dataset}/{model}/localization_{cam}.json",
    log:
        "results/logs/evaluate_localization/{dataset}/{model}/{cam}.log",
    benchmark:
        "results/benchmarks/evaluate_localization/{dataset}/{model}/{cam}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: res("evaluate", "mem_mb", 4000) * attempt,
        runtime=lambda w, attempt: res("evaluate", "runtime", 30) * attempt,
        cpus_per_task=1,
    params:
        # the references get the same refinement (CRF) as the CAM masks
        cfg=cfg_json(
            {
                **config.get("evaluate", {}).get("localization", {}),
                "refine": config["refine"],
            }
        ),
    shell:
        "oacl evaluate localization --cfg {params.cfg:q} --manifest {input.manifest:q}"
        " --masks {input.masks:q} --boxes {input.boxes:q} --out {output.json:q} > {log:q} 2>&1"


rule evaluate_transfer:
    """Linear evaluation of a model trained on {dataset} on another dataset {target}."""
    input:
        checkpoint="results/models/{dataset}/{model}/model.pt",
        manifest="results/data/{target}/manifest.parquet",
        code=code("oacl.evaluate.cli", "oacl.evaluate.linear"),
    output:
        json="results/eval/{dataset}/{model}/transfer_{target}.json",
    log:
        "results/logs/evaluate_transfer/{dataset}/{model}/{target}.log",
    benchmark:
        "results/benchmarks/evaluate_transfer/{dataset}/{model}/{target}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: res("evaluate", "mem_mb", 4000) * attempt,
        runtime=lambda w, attempt: res("evaluate", "runtime", 30) * attempt,
        cpus_per_task=2,
    params:
        cfg=cfg_json(config.get("evaluate", {}).get("linear", {})),
        cache="results/features/{dataset}/{model}/transfer_{target}",
        device=config.get("device", "auto"),
    shell:
        "oacl evaluate linear --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --cache-dir {params.cache:q}"
        " --device {params.device} --out {output.json:q} > {log:q} 2>&1"
