rule evaluate_linear:
    input:
        checkpoint=path("model"),
        manifest=path("manifest"),
        code=code("oacl.evaluate.cli", "oacl.evaluate.linear"),
    output:
        json=eval_report(path("eval", evaluation="linear"), "linear"),
    log:
        log_of("evaluate_linear", "{dataset}/{model}"),
    benchmark:
        benchmark_of("evaluate_linear", "{dataset}/{model}")
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        **res("evaluate", mem_mb=4000, runtime=30, cpus_per_task=2),
        gpu=config["evaluate"].get("gpus", 0),
    params:
        cfg=cfg_json(config.get("evaluate", {}).get("linear", {})),
        cache=path("features"),
        device=job_device(config["evaluate"].get("gpus", 0)),
    shell:
        "oacl evaluate linear --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --cache-dir {params.cache:q}"
        " --device {params.device} --out {output.json:q} > {log:q} 2>&1"


rule evaluate_shift:
    input:
        checkpoint=path("model"),
        manifest=path("manifest"),
        # its features are cached and its lambda reused (same head): no double work
        linear=path("eval", evaluation="linear"),
        code=code("oacl.evaluate.cli", "oacl.evaluate.shift"),
    output:
        json=eval_report(path("eval", evaluation="shift"), "shift"),
    log:
        log_of("evaluate_shift", "{dataset}/{model}"),
    benchmark:
        benchmark_of("evaluate_shift", "{dataset}/{model}")
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        **res("evaluate", mem_mb=4000, runtime=30, cpus_per_task=2),
        gpu=config["evaluate"].get("gpus", 0),
    params:
        cfg=cfg_json(config.get("evaluate", {}).get("shift", {})),
        cache=path("features"),
        device=job_device(config["evaluate"].get("gpus", 0)),
    shell:
        "oacl evaluate shift --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --linear-json {input.linear:q} --cache-dir {params.cache:q}"
        " --device {params.device} --out {output.json:q} > {log:q} 2>&1"


rule evaluate_localization:
    input:
        manifest=path("manifest"),
        masks=lambda w: cam_shards("masks", w.dataset, w.model, w.cam),
        boxes=lambda w: cam_shards("boxes", w.dataset, w.model, w.cam),
        code=code("oacl.evaluate.cli", "oacl.evaluate.localization"),
    output:
        json=eval_report(path("eval", evaluation="localization_{cam}"), "localization"),
    log:
        log_of("evaluate_localization", "{dataset}/{model}/{cam}"),
    benchmark:
        benchmark_of("evaluate_localization", "{dataset}/{model}/{cam}")
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        **res("evaluate", mem_mb=4000, runtime=30, cpus_per_task=1),
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
        checkpoint=path("model"),
        manifest=path("manifest", dataset="{target}"),
        code=code("oacl.evaluate.cli", "oacl.evaluate.linear"),
    output:
        json=eval_report(path("eval", evaluation="transfer_{target}"), "transfer"),
    log:
        log_of("evaluate_transfer", "{dataset}/{model}/{target}"),
    benchmark:
        benchmark_of("evaluate_transfer", "{dataset}/{model}/{target}")
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        **res("evaluate", mem_mb=4000, runtime=30, cpus_per_task=2),
        gpu=config["evaluate"].get("gpus", 0),
    params:
        cfg=cfg_json(config.get("evaluate", {}).get("linear", {})),
        cache=path("transfer_features"),
        device=job_device(config["evaluate"].get("gpus", 0)),
    shell:
        "oacl evaluate linear --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --cache-dir {params.cache:q}"
        " --device {params.device} --out {output.json:q} > {log:q} 2>&1"
