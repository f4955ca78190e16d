rule cam:
    input:
        checkpoint=path("model"),
        manifest=path("manifest"),
        code=code("oacl.cam.cli"),
    output:
        masks=path("masks"),
    log:
        log_of("cam", "{dataset}/{model}/{cam}/{shard}"),
    benchmark:
        benchmark_of("cam", "{dataset}/{model}/{cam}/{shard}")
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        **res("cam", mem_mb=4000, runtime=60, cpus_per_task=1),
        gpu=config["cam"].get("gpus", 0),
    params:
        cfg=lambda w: cfg_json(cam_cfg(w)),
        n_shards=n_shards(),
        device=job_device(config["cam"].get("gpus", 0)),
    shell:
        "oacl cam --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --shard {wildcards.shard}"
        " --n-shards {params.n_shards} --device {params.device}"
        " --out {output.masks:q} > {log:q} 2>&1"
