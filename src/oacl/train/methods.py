"""The pretraining objectives: MoCo v2, BYOL and a supervised baseline.

Each is an ``nn.Module`` with ``forward(view1, view2, labels) -> (loss, stats)``,
``momentum_update(progress)`` (called after every optimiser step, ``progress`` in
[0, 1] over the whole run) and ``export(meta) -> EmbeddingModel`` (what model.pt holds).

MoCo v2 (Chen et al. 2020): query encoder + 2-layer MLP projector (hidden = feature
dim) to 128-d, L2-normalised; key encoder/projector an EMA (0.999) of the query ones;
InfoNCE against a queue of past keys at temperature 0.2. ``symmetric=False`` (default)
is the original asymmetric loss (query view1, key view2); ``symmetric=True`` averages
both directions and enqueues both key sets. Under DDP the keys of all ranks are
gathered before they enter the queue.

Shuffle-BN: MoCo's batch-norm leak (a query finding its positive through shared
batch statistics) is blocked on any device count by split-BN: the query batch is run
through the encoder in ``bn_splits`` chunks and the key batch is permuted before its
chunked pass, so a query and its key normalise with different samples (the single-GPU
emulation of the MoCo authors' CIFAR demo). Under DDP the chunks are per rank; with
SyncBN (CUDA) a chunk's statistics span that chunk on all ranks, which keeps the
query/key decorrelation because the key permutation still differs from the query order.

BYOL (Grill et al. 2020): projector and predictor are Linear-BN-ReLU-Linear with
hidden 4096 and output 256; the target network is an EMA whose momentum follows
1 - (1 - 0.99)(cos(pi p) + 1)/2, p the training progress; loss is the symmetrised
2 - 2 cos(prediction, target projection) summed over the two directions.
``hidden=None`` picks 4096 for resnet18/resnet50 and 512 for the resnet18_small family (128-d
features: a 4096 head would dominate its compute).

Supervised: cross-entropy of a linear classifier on the pooled features of view1.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import EmbeddingModel, build_encoder, feat_dim, mlp
from . import dist


def _chunked(net: nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """``net(x)`` with batch-norm statistics computed per chunk of the batch."""
    if splits <= 1 or not net.training:
        return net(x)
    return torch.cat([net(c) for c in x.chunk(splits)])


def _frozen_copy(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def _ema(target: nn.Module, online: nn.Module, m: float) -> None:
    """target <- m * target + (1 - m) * online (parameters only, as in MoCo/BYOL)."""
    t = [p for p in target.parameters()]
    o = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t, m)
    torch._foreach_add_(t, o, alpha=1.0 - m)


class _Method(nn.Module):
    """Shared export: the online encoder plus the projector later stages use."""

    projector_spec: dict | None = None

    def export(self, meta: dict) -> EmbeddingModel:
        meta = dict(meta, projector=self.projector_spec)
        model = EmbeddingModel(meta)
        model.encoder.load_state_dict(self.encoder.state_dict())
        if self.projector_spec is not None:
            model.projector.head.load_state_dict(self.projector.state_dict())
        if hasattr(self, "classifier"):
            model.classifier.load_state_dict(self.classifier.state_dict())
        return model.eval()

    def momentum_update(self, progress: float) -> None:
        pass


class MoCo(_Method):
    def __init__(
        self,
        arch: str,
        dim: int = 128,
        hidden: int | None = None,
        queue_size: int = 4096,
        momentum: float = 0.999,
        temperature: float = 0.2,
        symmetric: bool = False,
        bn_splits: int = 1,
        shuffle_bn: bool = True,
    ):
        super().__init__()
        f = feat_dim(arch)
        hidden = hidden or f
        self.projector_spec = {"in": f, "hidden": hidden, "out": dim, "bn": False}
        self.encoder = build_encoder(arch)
        self.projector = mlp(f, hidden, dim, bn=False)
        self.key_encoder = _frozen_copy(self.encoder)
        self.key_projector = _frozen_copy(self.projector)
        self.m, self.T, self.symmetric = momentum, temperature, symmetric
        self.bn_splits, self.shuffle_bn = bn_splits, shuffle_bn
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _query(self, x):
        return F.normalize(self.projector(_chunked(self.encoder, x, self.bn_splits)).float(), dim=1)

    @torch.no_grad()
    def _key(self, x):
        shuffle = self.shuffle_bn and self.bn_splits > 1 and self.training
        if shuffle:
            perm = torch.randperm(x.shape[0], device=x.device)
            x = x[perm]
        k = self.key_projector(_chunked(self.key_encoder, x, self.bn_splits)).float()
        k = F.normalize(k, dim=1)
        return k[torch.argsort(perm)] if shuffle else k

    def _infonce(self, q, k):
        pos = (q * k).sum(dim=1, keepdim=True)
        neg = q @ self.queue.clone().t()
        logits = torch.cat([pos, neg], dim=1) / self.T
        target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        acc = (logits.argmax(dim=1) == 0).float().mean()
        return F.cross_entropy(logits, target), acc

    def forward(self, view1, view2, labels=None):
        q1, k2 = self._query(view1), self._key(view2)
        loss, acc = self._infonce(q1, k2)
        keys = k2
        if self.symmetric:
            q2, k1 = self._query(view2), self._key(view1)
            loss2, acc2 = self._infonce(q2, k1)
            loss, acc = (loss + loss2) / 2, (acc + acc2) / 2
            keys = torch.cat([k2, k1])
        if self.training:
            self._enqueue(dist.all_gather_cat(keys))
        return loss, {"loss": loss.detach(), "acc": acc.detach()}

    @torch.no_grad()
    def _enqueue(self, keys):
        n, size = keys.shape[0], self.queue.shape[0]
        if size % n:
            raise ValueError(
                f"moco.queue_size {size} must be a multiple of the keys per step {n} "
                "(global batch size, x2 if symmetric)"
            )
        ptr = int(self.queue_ptr)
        self.queue[ptr : ptr + n] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + n) % size)

    def momentum_update(self, progress: float) -> None:
        _ema(self.key_encoder, self.encoder, self.m)
        _ema(self.key_projector, self.projector, self.m)


class BYOL(_Method):
    def __init__(
        self, arch: str, dim: int = 256, hidden: int | None = None, base_momentum: float = 0.99
    ):
        super().__init__()
        f = feat_dim(arch)
        hidden = hidden or (512 if arch.startswith("resnet18_small") else 4096)
        self.projector_spec = {"in": f, "hidden": hidden, "out": dim, "bn": True}
        self.encoder = build_encoder(arch)
        self.projector = mlp(f, hidden, dim, bn=True)
        self.predictor = mlp(dim, hidden, dim, bn=True)
        self.target_encoder = _frozen_copy(self.encoder)
        self.target_projector = _frozen_copy(self.projector)
        self.base_momentum = base_momentum

    def forward(self, view1, view2, labels=None):
        p1 = self.predictor(self.projector(self.encoder(view1))).float()
        p2 = self.predictor(self.projector(self.encoder(view2))).float()
        with torch.no_grad():
            z1 = self.target_projector(self.target_encoder(view1)).float()
            z2 = self.target_projector(self.target_encoder(view2)).float()
        loss = (2 - 2 * F.cosine_similarity(p1, z2)).mean() + (
            2 - 2 * F.cosine_similarity(p2, z1)
        ).mean()
        return loss, {"loss": loss.detach()}

    def target_momentum(self, progress: float) -> float:
        return 1 - (1 - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2

    def momentum_update(self, progress: float) -> None:
        m = self.target_momentum(progress)
        _ema(self.target_encoder, self.encoder, m)
        _ema(self.target_projector, self.projector, m)


class Supervised(_Method):
    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(
                f"supervised pretraining needs labels with >= 2 classes, got {num_classes}"
            )
        self.encoder = build_encoder(arch)
        self.classifier = nn.Linear(feat_dim(arch), num_classes)

    def forward(self, view1, view2, labels=None):
        logits = self.classifier(self.encoder(view1)).float()
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc.detach()}


def build_method(params: dict, num_classes: int) -> _Method:
    """The method module named by ``params["method"]`` (the pretrain config)."""
    name, arch = params["method"], params["arch"]
    if name == "moco":
        c = params["moco"]
        return MoCo(
            arch,
            dim=c["dim"],
            hidden=c["hidden"],
            queue_size=c["queue_size"],
            momentum=c["momentum"],
            temperature=c["temperature"],
            symmetric=c["symmetric"],
            bn_splits=c["bn_splits"],
            shuffle_bn=c["shuffle_bn"],
        )
    if name == "byol":
        c = params["byol"]
        return BYOL(arch, dim=c["dim"], hidden=c["hidden"], base_momentum=c["base_momentum"])
    if name == "supervised":
        return Supervised(arch, num_classes)
    raise ValueError(f"pretrain: unknown method {name!r} (known: moco, byol, supervised)")
