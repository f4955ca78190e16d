"""Which torch device a stage runs on: ``resolve_device``, the one rule every stage uses
(pretraining, CAM, feature extraction for evaluation). Light: torch is imported inside
the function, so importing this module costs nothing.
"""

from __future__ import annotations

NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str, where: str = "device") -> str:
    """``"cuda"`` or ``"cpu"`` for a device name of ``NAMES``: ``auto`` is CUDA when
    available, else the CPU; ``cuda`` without CUDA, or another name, is a ValueError."""
    if name not in NAMES:
        raise ValueError(f"{where}: device must be one of {', '.join(NAMES)}, got {name!r}")
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{where}: device 'cuda' requested but CUDA is not available")
    return name


def job_header(command: str, device: str | None = None, uses_torch: bool = False) -> str:
    """The first line of a job's log: the host, and the device the stage runs on (with
    the CUDA device's name). A device of ``cuda`` (or ``cuda:i``) that finds no CUDA is
    a ValueError here, before any work: such a job must fail, not fall back to the CPU."""
    import socket

    host = socket.gethostname()
    if not uses_torch:
        return f"oacl {command}: host {host}, device cpu (no torch device used)"
    import torch

    name = device or "auto"
    kind, _, index = name.partition(":")
    if kind not in NAMES:
        raise ValueError(f"device must be one of {', '.join(NAMES)} (or cuda:i), got {name!r}")
    cuda = torch.cuda.is_available()
    if kind == "cuda" and not cuda:
        import os

        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise ValueError(
            f"device {name!r} requested but CUDA is not available on host {host} "
            f"(CUDA_VISIBLE_DEVICES={visible}); not falling back to the CPU"
        )
    if kind == "cpu" or not cuda:
        why = "requested" if kind == "cpu" else "auto: CUDA not available"
        return f"oacl {command}: host {host}, device cpu ({why})"
    i = int(index) if index else torch.cuda.current_device()
    return (
        f"oacl {command}: host {host}, device cuda:{i} ({torch.cuda.get_device_name(i)}; "
        f"{torch.cuda.device_count()} visible, torch {torch.__version__}, CUDA {torch.version.cuda})"
    )


def gpu_request_errors(gpus: dict, set_resources: dict, default_resources: dict) -> list[str]:
    """Contradictory GPU requests, found before any job is scheduled. ``gpus``: for each
    rule that may use a GPU, ``{config key: GPUs per job}`` from the config; the others
    are {} (they never use one). ``set_resources``: ``{rule: {resource: value}}`` of
    --set-resources / a profile's set-resources; ``default_resources``: likewise
    {resource: value}. The Slurm executor plugin turns a `gpu_model` into
    ``--gpus=<model>:<gpu>``, so a model beside 0 GPUs asks Slurm for ``a100:0``."""
    errors = []
    for rule, counts in sorted(gpus.items()):
        own = set_resources.get(rule, {})
        model = own.get("gpu_model") or default_resources.get("gpu_model")
        if not model:
            continue
        origin = (
            f"set-resources {rule}:gpu_model={model}"
            if own.get("gpu_model")
            else f"default-resources gpu_model={model}"
        )
        if "gpu" in own:  # --set-resources RULE:gpu=N wins over the config
            counts = {f"set-resources {rule}:gpu": own["gpu"]}
        if not counts:
            errors.append(f"{origin}, but rule {rule} uses no GPU (drop gpu_model for it)")
            continue
        zero = sorted(key for key, n in counts.items() if int(n) == 0)
        if zero:
            errors.append(
                f"{origin}, but {', '.join(zero)} is 0: the job would request "
                f"--gpus={model}:0 (set {zero[0]} >= 1, or drop gpu_model for {rule})"
            )
    return errors
