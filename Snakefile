# oacl: object-aware contrastive learning (Mo et al., NeurIPS 2021) as a staged pipeline.
#
#   snakemake --cores all                    # the embedded default (synthetic scenes)
#   snakemake --cores all --profile slurm    # the same on a Slurm cluster
#
# Rules are thin: each calls one `oacl` command; the logic is in src/oacl.


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/cam.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
