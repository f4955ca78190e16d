rule refine:
    input:
        masks=path("masks"),
        manifest=path("manifest"),
        code=code("oacl.refine.cli", "oacl.refine.shard"),
    output:
        boxes=path("boxes"),
    log:
        log_of("refine", "{dataset}/{model}/{cam}/{shard}"),
    benchmark:
        benchmark_of("refine", "{dataset}/{model}/{cam}/{shard}")
    conda:
        "../../envs/refine.yaml"
    threads: 1
    resources:
        **res("refine", mem_mb=2000, runtime=60),
        cpus_per_task=1,
    params:
        cfg=cfg_json(config["refine"]),
        n_shards=n_shards(),
    shell:
        "oacl refine --cfg {params.cfg:q} --manifest {input.manifest:q}"
        " --masks {input.masks:q} --out {output.boxes:q} --n-shards {params.n_shards}"
        " > {log:q} 2>&1"
