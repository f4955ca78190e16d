rule pretrain:
    input:
        unpack(pretrain_inputs),
        code=code("oacl.train.cli"),
    output:
        model=path("model", model="{method}-{variant}-s{seed}"),
    log:
        log_of("pretrain", "{dataset}/{method}-{variant}-s{seed}"),
    benchmark:
        benchmark_of("pretrain", "{dataset}/{method}-{variant}-s{seed}")
    retries: pretrain_retries()  # walltime chunks: one run per chunk (common.smk)
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        **res("pretrain", mem_mb=8000),
        gpu=pretrain_gpus,
        runtime=pretrain_runtime,
        stop_after_s=pretrain_stop_after,  # a resource: not a rerun trigger like params
        # DDP: all GPUs of one job on one node, data-loader CPUs per GPU
        nodes=1,
        cpus_per_task=pretrain_cpus,
    params:
        cfg=lambda w: cfg_json(pretrain_cfg(w)),
        device=lambda w: job_device(pretrain_gpus(w)),
        # every shard after one flag (`--boxes S0 S1 ...`); "" when the variant reads none
        boxes=lambda w, input: list_flag("--boxes", input.get("boxes", [])),
        masks=lambda w, input: list_flag("--masks", input.get("masks", [])),
        nproc=lambda w: max(1, pretrain_gpus(w)),
    shell:
        "oacl pretrain --cfg {params.cfg:q} --manifest {input.manifest:q}"
        " --out {output.model:q} {params.boxes} {params.masks}"
        " --device {params.device} --nproc {params.nproc}"
        " --stop-after {resources.stop_after_s} > {log:q} 2>&1"
