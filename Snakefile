# oacl: object-aware contrastive learning (Mo et al., NeurIPS 2021) as a staged pipeline.
#
#   snakemake --cores all                    # the embedded default (synthetic scenes)
#   snakemake --cores all --profile slurm    # the same on a Slurm cluster
#   snakemake --cores all --directory /scratch/run1   # results/ under /scratch/run1
#
# Rules are thin: each calls one `oacl` command; the logic is in src/oacl.
# common.smk loads config.yaml (beside this file, whatever the working directory) and
# checks the whole configuration before any job is scheduled.


report: "workflow/report/workflow.rst"  # the description of `snakemake --report`


include: "workflow/rules/common.smk"


# model names {method}-{variant}-s{seed}: the patterns of src/oacl/variants.py
wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    method=variants.METHOD_RE,
    variant=variants.VARIANT_RE,
    seed=variants.SEED_RE,
    model=variants.MODEL_RE,
    cam=r"[A-Za-z0-9_]+",
    target=r"[A-Za-z0-9_]+",
    shard=r"[0-9]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/cam.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


check_gpu_requests()  # every rule is known now


rule all:
    default_target: True
    input:
        all_targets(),
