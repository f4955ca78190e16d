rule prepare_data:
    input:
        code=data_code,
    output:
        manifest="results/data/{dataset}/manifest.parquet",
    log:
        "results/logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: res("data", "mem_mb", 4000) * attempt,
        runtime=lambda w, attempt: res("data", "runtime", 30) * attempt,
        cpus_per_task=2,
    params:
        cfg=lambda w: cfg_json(config["datasets"][w.dataset]),
        out=lambda w: f"results/data/{w.dataset}",
    shell:
        "oacl data prepare --cfg {params.cfg:q} --out {params.out:q} > {log:q} 2>&1"
