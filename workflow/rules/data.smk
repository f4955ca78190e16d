def data_code(wildcards):
    kind = config["datasets"][wildcards.dataset]["type"]
    own = {"scenes": "data/scenes.py", "folder": "data/folder.py"}.get(
        kind, f"data/readers/{kind}.py"
    )
    return code(*SHARED_CODE, "data/prepare.py", "data/cli.py", own)


rule prepare_data:
    input:
        code=data_code,
    output:
        manifest="results/data/{dataset}/manifest.parquet",
    params:
        cfg=lambda w: cfg_json(config["datasets"][w.dataset]),
        out=lambda w: f"results/data/{w.dataset}",
    log:
        "results/logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: res("data", "mem_mb", 4000) * attempt,
        runtime=lambda w, attempt: res("data", "runtime", 30) * attempt,
        cpus_per_task=2,
    shell:
        "oacl data prepare --cfg {params.cfg:q} --out {params.out:q} > {log:q} 2>&1"
