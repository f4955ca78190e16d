rule prepare_data:
    input:
        code=data_code,
        sources=data_sources,
    output:
        manifest=path("manifest"),
    log:
        log_of("prepare_data", "{dataset}"),
    benchmark:
        benchmark_of("prepare_data", "{dataset}")
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        **res("data", mem_mb=4000, runtime=30),
        cpus_per_task=2,
    params:
        cfg=lambda w: cfg_json(config["datasets"][w.dataset]),
        out=lambda w: path("data", dataset=w.dataset),
    shell:
        "oacl data prepare --cfg {params.cfg:q} --out {params.out:q} > {log:q} 2>&1"


# Cut-outs / photos for composite datasets, from Debian packages (apt-get download +
# dpkg -x; no root). The .deb stays in results/sources/.debs, keyed by its SHA-256.
rule fetch_source:
    output:
        directory(path("source")),
    log:
        log_of("fetch_source", "{source}"),
    wildcard_constraints:
        source="openclipart|wallpapers",
    conda:
        "../../envs/data.yaml"  # the oacl command; apt-get and dpkg come from the host
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        cpus_per_task=1,
    shell:
        "oacl data fetch {wildcards.source} {output:q} --cache results/sources/.debs > {log:q} 2>&1"
