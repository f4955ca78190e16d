rule pretrain:
    input:
        unpack(pretrain_inputs),
        code=code("oacl.train.cli"),
    output:
        model="results/models/{dataset}/{method}-{variant}-s{seed}/model.pt",
    log:
        "results/logs/pretrain/{dataset}/{method}-{variant}-s{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{dataset}/{method}-{variant}-s{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=pretrain_gpus,
        mem_mb=lambda w, attempt: res("pretrain", "mem_mb", 8000) * attempt,
        runtime=pretrain_runtime,
        # DDP: all GPUs of one job on one node, data-loader CPUs per GPU
        nodes=1,
        cpus_per_task=lambda w: res("pretrain", "cpus_per_task", 2)
        * max(1, pretrain_gpus(w)),
    params:
        cfg=lambda w: cfg_json(pretrain_cfg(w)),
        device=config.get("device", "auto"),
        # every shard after one flag (`--boxes S0 S1 ...`); "" when the variant reads none
        boxes=lambda w, input: list_flag("--boxes", input.get("boxes", [])),
        masks=lambda w, input: list_flag("--masks", input.get("masks", [])),
        nproc=lambda w: max(1, pretrain_gpus(w)),
    shell:
        "oacl pretrain --cfg {params.cfg:q} --manifest {input.manifest:q}"
        " --out {output.model:q} {params.boxes} {params.masks}"
        " --device {params.device} --nproc {params.nproc} > {log:q} 2>&1"
