rule report:
    input:
        results=report_inputs,
        code=code("oacl.report.cli"),
    output:
        html=report(path("report"), caption="../report/report.rst", category="Report"),
    log:
        log_of("report"),
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        cpus_per_task=1,
    params:
        cfg=cfg_json(config),
        results=lambda w, output: os.path.dirname(output.html),  # the results folder
    shell:
        "oacl report --cfg {params.cfg:q} --results {params.results:q} --inputs {input.results:q}"
        " --out {output.html:q} > {log:q} 2>&1"
