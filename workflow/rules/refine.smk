rule refine:
    input:
        masks="results/cam/{dataset}/{model}/{cam}/masks_{shard}.parquet",
        manifest="results/data/{dataset}/manifest.parquet",
        code=code("oacl.refine.cli", "oacl.refine.shard"),
    output:
        boxes="results/refine/{dataset}/{model}/{cam}/boxes_{shard}.parquet",
    log:
        "results/logs/refine/{dataset}/{model}/{cam}/{shard}.log",
    benchmark:
        "results/benchmarks/refine/{dataset}/{model}/{cam}/{shard}.tsv"
    conda:
        "../../envs/refine.yaml"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: res("refine", "mem_mb", 2000) * attempt,
        runtime=lambda w, attempt: res("refine", "runtime", 60) * attempt,
        cpus_per_task=1,
    params:
        cfg=cfg_json(config["refine"]),
    shell:
        "oacl refine --cfg {params.cfg:q} --manifest {input.manifest:q}"
        " --masks {input.masks:q} --out {output.boxes:q} > {log:q} 2>&1"
