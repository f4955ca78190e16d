"""GPU requests that cannot be what was meant stop the run before any job, and a job
asked to run on CUDA fails where there is none (issue 27.4)."""

import logging
import socket

import pytest
import torch
from conftest import run_snakemake

from oacl.device import gpu_request_errors, job_header

GPU_RULES = {"pretrain": {"pretrain.gpus": 0}, "cam": {"cam.gpus": 1}, "refine": {}}


def test_gpu_model_beside_zero_gpus_is_an_error_naming_both_keys():
    assert gpu_request_errors(GPU_RULES, {}, {}) == []
    assert gpu_request_errors(GPU_RULES, {"cam": {"gpu_model": "a100"}}, {}) == []
    (err,) = gpu_request_errors(GPU_RULES, {"pretrain": {"gpu_model": "a100"}}, {})
    assert "set-resources pretrain:gpu_model=a100" in err and "pretrain.gpus is 0" in err
    assert "--gpus=a100:0" in err
    # --set-resources pretrain:gpu=1 wins over the config: nothing contradicts
    assert gpu_request_errors(GPU_RULES, {"pretrain": {"gpu_model": "a100", "gpu": 1}}, {}) == []
    errs = gpu_request_errors(GPU_RULES, {}, {"gpu_model": "h100"})
    assert len(errs) == 2 and all("default-resources gpu_model=h100" in e for e in errs)
    assert "rule refine uses no GPU" in errs[1]


def test_the_workflow_checks_gpu_requests_before_any_job(workflow_copy):
    proc = run_snakemake(
        workflow_copy, "-n", "--set-resources", "pretrain:gpu_model=a100", check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "nothing was run" in out
    assert "set-resources pretrain:gpu_model=a100, but pretrain.gpus is 0" in out
    # docs/cluster.md: the GPUs for the embedded default, beside the site profile's models
    args = ["--config", "pretrain={gpus: 1}", "cam={gpus: 1}", "evaluate={gpus: 1}"]
    models = ["--set-resources", "pretrain:gpu_model=a100", "cam:gpu_model=a100"]
    out = run_snakemake(workflow_copy, "-n", *args, *models).stdout
    jobs = [b for b in out.split("\nrule ")[1:] if b.startswith(("pretrain:", "evaluate_linear:"))]
    assert jobs and all("gpu=1" in b and "--device cuda" in b for b in jobs)


def test_job_header_names_host_and_device():
    host = socket.gethostname()
    assert job_header("refine") == f"oacl refine: host {host}, device cpu (no torch device used)"
    assert job_header("cam", "cpu", True) == f"oacl cam: host {host}, device cpu (requested)"
    line = job_header("pretrain", "auto", True)
    assert line.startswith(f"oacl pretrain: host {host}, device ")
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name(0) in job_header("cam", "cuda:0", True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_job_asked_for_cuda_without_cuda_fails_at_start(tmp_path, capsys, caplog):
    from oacl.cli import main

    with pytest.raises(ValueError, match="not falling back to the CPU"):
        job_header("pretrain", "cuda", True)
    missing = str(tmp_path / "missing.parquet")  # the device fails first, not the data
    argv = ["evaluate", "linear", "--cfg", "{}", "--checkpoint", missing, "--manifest", missing]
    with caplog.at_level(logging.INFO):
        rc = main(
            [
                *argv,
                "--cache-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "o.json"),
                "--device",
                "cuda",
            ]
        )
    err = capsys.readouterr().err
    assert rc == 2 and "CUDA is not available" in err and "missing.parquet" not in err
