rule cam:
    input:
        checkpoint="results/models/{dataset}/{model}/model.pt",
        manifest="results/data/{dataset}/manifest.parquet",
        code=code("oacl.cam.cli"),
    output:
        masks="results/cam/{dataset}/{model}/{cam}/masks_{shard}.parquet",
    log:
        "results/logs/cam/{dataset}/{model}/{cam}/{shard}.log",
    benchmark:
        "results/benchmarks/cam/{dataset}/{model}/{cam}/{shard}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=config["cam"].get("gpus", 0),
        mem_mb=lambda w, attempt: res("cam", "mem_mb", 4000) * attempt,
        runtime=lambda w, attempt: res("cam", "runtime", 60) * attempt,
        cpus_per_task=lambda w: res("cam", "cpus_per_task", 1),
    params:
        cfg=lambda w: cfg_json(cam_cfg(w)),
        n_shards=n_shards(),
        device=config.get("device", "auto"),
    shell:
        "oacl cam --cfg {params.cfg:q} --checkpoint {input.checkpoint:q}"
        " --manifest {input.manifest:q} --shard {wildcards.shard}"
        " --n-shards {params.n_shards} --device {params.device}"
        " --out {output.masks:q} > {log:q} 2>&1"
