"""OccDepth's training losses (official ``OccDepth.step``, occdepth/models/OccDepth.py
L378-533, and occdepth/loss/{ssc_loss,CRP_loss,depth_loss}.py).

Each loss is a small function over model outputs and batched targets from
:mod:`occdepth_ros.train.targets`; :func:`compute_losses` adds them up the way the
official training step does. Official quirks that change a value are kept and marked
"Official:". Inputs where the official code divides by zero (NaN or an exception)
return a finite value instead and are marked "Guard:".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F

from ..classes import ClassSet
from ..model.config import ModelConfig

# Official log names (without the "train/" prefix), so curves compare one to one.
KEY_RELATION = "loss_relation_ce_super"
KEY_SSC = "loss_ssc"
KEY_OCC = "loss_occ"
KEY_DEPTH = "loss_depth"
KEY_SEM_SCAL = "loss_sem_scal"
KEY_GEO_SCAL = "loss_geo_scal"
KEY_FRUSTUM = "loss_frustums"
KEY_TOTAL = "total"

# Frustums are matched against probabilities in chunks to bound the (k, N) float mask.
_FRUSTUM_CHUNK = 8


@dataclass(frozen=True)
class LossConfig:
    """Which terms train the model and their weights. Defaults = the released KITTI
    config: every term on, weight 1 (``depth_loss_weight: 1.0``)."""

    ssc_ce: bool = True
    ssc_ce_weight: float = 1.0
    # Official: the occupancy CE runs only inside ``if CE_ssc_loss`` (OccDepth.py
    # step); here it has its own switch. Same value with the defaults.
    occ_ce: bool = True
    occ_ce_weight: float = 1.0
    # The official optional linear decay (sem_step_decay_loss, off in every released
    # config) is the caller's business: vary sem_scal_weight.
    sem_scal: bool = True
    sem_scal_weight: float = 1.0
    geo_scal: bool = True
    geo_scal_weight: float = 1.0
    # Official: skipped in test steps; leave the frustum keys out of the batch there.
    frustum: bool = True
    frustum_weight: float = 1.0
    relation: bool = True
    relation_weight: float = 1.0
    depth: bool = True
    depth_weight: float = 1.0


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A 0 that stays on the autograd graph (zero gradient), for skipped degenerate cases."""
    return like.sum() * 0.0


def _bce_to_one(x: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """Elementwise BCE(x, 1) = -max(log x, -100) where ``use``, else 0, via torch's BCE
    so the -100 clamp and the gradient match the official calls exactly.
    Guard: x is clamped to [0, 1]; the official BCE raises if rounding puts it above 1."""
    x = torch.where(use, x.clamp(0.0, 1.0), torch.ones_like(x))
    return F.binary_cross_entropy(x, torch.ones_like(x), reduction="none") * use


def _safe(den: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Denominator with 1 where it is unused, so neither values nor gradients turn NaN."""
    return torch.where(ok, den, torch.ones_like(den))


# --- cross entropies -----------------------------------------------------------------


def ce_ssc_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """Weighted CE, mean over non-ignored voxels weighted by their class weight
    (``nn.CrossEntropyLoss(weight, ignore_index=255, reduction="mean")``).
    Guard: 0 when every voxel is ignored (official: NaN)."""
    target = target.long()
    if not bool((target != ignore_index).any()):
        return _zero(logits)
    weight = class_weights.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index)


def occupancy_target(target: torch.Tensor, empty_index: int = 0, ignore_index: int = 255) -> torch.Tensor:
    """Classes other than empty and ignore -> 1 (the cascade head's empty/occupied GT)."""
    target = target.long()
    occupied = (target != empty_index) & (target != ignore_index)
    return torch.where(occupied, torch.ones_like(target), target)


def occ_ce_loss(
    occ_logits: torch.Tensor,
    target: torch.Tensor,
    occ_weights: torch.Tensor,
    empty_index: int = 0,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Cascade head's 2-class CE, with ``ClassSet.occupancy_weights()``; 255 stays ignored."""
    return ce_ssc_loss(occ_logits, occupancy_target(target, empty_index, ignore_index), occ_weights, ignore_index)


# --- scene-class affinity losses (MonoScene) -----------------------------------------


def sem_scal_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Per class c present among the non-ignored voxels: BCE-to-1 of precision, recall
    and specificity of the soft prediction P(c); summed per class, averaged over the
    present classes. Official terms are conditional: precision if sum P(c) > 0,
    specificity if some voxel is not c. Vectorised over classes with the identity
    sum_{t != c} (1 - p_c) = #(t != c) - (sum p_c - sum_{t = c} p_c).
    Guard: 0 when no voxel is labelled (official: division by zero)."""
    n_classes = logits.shape[1]
    probs = F.softmax(logits.float(), dim=1).movedim(1, -1).reshape(-1, n_classes)
    t = target.reshape(-1).long()
    valid = t != ignore_index
    if not bool(valid.any()):
        return _zero(logits)
    p, t = probs[valid], t[valid]
    if int(t.max()) >= n_classes or int(t.min()) < 0:
        raise ValueError(f"target labels must be < {n_classes} or {ignore_index}")
    n_pos = torch.bincount(t, minlength=n_classes).to(p.dtype)
    n_neg = t.numel() - n_pos
    sum_p = p.sum(dim=0)
    hit = torch.zeros(n_classes, dtype=p.dtype, device=p.device).index_add(
        0, t, p.gather(1, t[:, None]).squeeze(1)
    )
    present = n_pos > 0
    use_prec = present & (sum_p > 0)
    use_spec = present & (n_neg > 0)
    precision = hit / _safe(sum_p, use_prec)
    recall = hit / _safe(n_pos, present)
    specificity = (n_neg - (sum_p - hit)) / _safe(n_neg, use_spec)
    per_class = (
        _bce_to_one(precision, use_prec) + _bce_to_one(recall, present) + _bce_to_one(specificity, use_spec)
    )
    return per_class.sum() / present.sum().to(p.dtype)


def geo_scal_loss(
    logits: torch.Tensor, target: torch.Tensor, empty_index: int = 0, ignore_index: int = 255
) -> torch.Tensor:
    """Binary (occupied vs empty) version on P(occupied) = 1 - P(empty): BCE-to-1 of
    precision, recall and specificity, summed.
    Guard: recall (specificity) is left out when no voxel is occupied (empty); the
    official returns NaN there. 0 when no voxel is labelled."""
    probs = F.softmax(logits.float(), dim=1)
    valid = target != ignore_index
    if not bool(valid.any()):
        return _zero(logits)
    p_empty = probs[:, empty_index][valid]
    p_full = 1.0 - p_empty
    t_full = (target[valid] != empty_index).to(p_empty.dtype)
    t_empty = 1.0 - t_full
    inter = (t_full * p_full).sum()
    dens = torch.stack([p_full.sum(), t_full.sum(), t_empty.sum()])
    nums = torch.stack([inter, inter, (t_empty * p_empty).sum()])
    use = dens > 0
    return _bce_to_one(nums / _safe(dens, use), use).sum()


# --- frustum proportion --------------------------------------------------------------


def frustum_proportion_loss(
    logits: torch.Tensor, frustum_masks: torch.Tensor, frustum_dists: torch.Tensor
) -> torch.Tensor:
    """Mean over non-empty local frustums of KL(q || p) on the classes with q > 0:
    q = GT class counts, p = summed softmax, both normalised.
    Official: counts and probabilities are pooled over the batch before normalising
    (one distribution per frustum for the whole batch), not averaged per sample.
    Guard: 0 when every frustum is empty (official: ZeroDivisionError)."""
    b, n_classes = logits.shape[:2]
    probs = F.softmax(logits.float(), dim=1).reshape(b, n_classes, -1)
    n_frustums = frustum_masks.shape[1]
    masks = frustum_masks.to(probs.device).reshape(b, n_frustums, -1)
    if masks.shape[2] != probs.shape[2]:
        raise ValueError(f"frustum masks cover {masks.shape[2]} voxels, logits {probs.shape[2]}")
    dists = frustum_dists.to(device=probs.device, dtype=torch.float32)
    if dists.shape != (b, n_frustums, n_classes):
        raise ValueError(f"frustum_dists must be {(b, n_frustums, n_classes)}, got {tuple(dists.shape)}")
    chunks = []
    for f0 in range(0, n_frustums, _FRUSTUM_CHUNK):
        sel = masks[:, f0 : f0 + _FRUSTUM_CHUNK].to(probs.dtype)  # (B, k, N)
        chunks.append(torch.bmm(sel, probs.transpose(1, 2)).sum(dim=0))  # (k, C)
    cum_prob = torch.cat(chunks, dim=0)  # (F, C), summed over the batch
    counts = dists.sum(dim=0)  # (F, C)
    total_prob, total_cnt = cum_prob.sum(dim=1), counts.sum(dim=1)
    use = (total_prob > 0) & (total_cnt > 0)
    if not bool(use.any()):
        return _zero(logits)
    q = counts[use] / total_cnt[use, None]
    p = cum_prob[use] / total_prob[use, None]
    nz = q > 0
    log_p = torch.log(torch.where(nz, p, torch.ones_like(p)))
    kl = torch.where(nz, torch.xlogy(q, q) - q * log_p, torch.zeros_like(p))
    return kl.sum() / use.sum().to(p.dtype)


# --- CRP relations -------------------------------------------------------------------


def relation_loss(p_logits: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits between ``P_logits`` and the relation GT, both (B, R, M, N3),
    mean over all entries, with pos_weight[r] = #negatives / #positives of relation r
    counted over the whole batch (official ``compute_super_CP_multilabel_loss``).
    Guard: pos_weight 1 for a relation with no positives (official: inf -> NaN loss);
    it multiplies only positive entries, so there the value is the plain BCE."""
    if p_logits.shape != relation.shape:
        raise ValueError(f"P_logits {tuple(p_logits.shape)} and relation {tuple(relation.shape)} differ")
    logits = p_logits.float()
    labels = relation.to(device=logits.device, dtype=torch.float32)
    r = logits.shape[1]
    per_rel = labels.transpose(0, 1).reshape(r, -1)
    # Official: integer counts, true division in float32.
    n_pos = torch.count_nonzero(per_rel, dim=1)
    n_neg = per_rel.shape[1] - n_pos
    ratio = n_neg.to(torch.float32) / n_pos.clamp(min=1).to(torch.float32)
    pos_weight = torch.where(n_pos > 0, ratio, torch.ones_like(ratio))
    return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight.view(1, r, 1, 1))


# --- depth supervision ---------------------------------------------------------------


def depth_bce_loss(
    depth_logits: torch.Tensor, labels: torch.Tensor, fg: torch.Tensor, view: int = 0
) -> torch.Tensor:
    """BCE between softmax depth probabilities and one-hot bins, summed over the bins
    of foreground cells and divided by max(1, #fg) (official ``DepthClsLoss``).
    Official: only the left view (``view`` 0) is supervised; the BCE runs in float32.
    ``labels``/``fg``: (B, h*w) from :func:`targets.depth_labels`, row-major."""
    logits = depth_logits[:, view].float()  # (B, D, h, w)
    b, n_bins, h, w = logits.shape
    probs = logits.softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, n_bins)
    fg = fg.to(probs.device).reshape(-1).bool()
    labels = labels.to(probs.device).reshape(-1).long()
    if fg.numel() != b * h * w or labels.numel() != b * h * w:
        raise ValueError(f"depth labels/fg must hold B*h*w = {b * h * w} cells, got {labels.numel()}/{fg.numel()}")
    sel = labels[fg]
    if sel.numel() and (int(sel.min()) < 0 or int(sel.max()) >= n_bins):
        raise ValueError(f"foreground depth labels must lie in [0, {n_bins})")
    onehot = F.one_hot(sel, n_bins).to(probs.dtype)
    bce = F.binary_cross_entropy(probs[fg], onehot, reduction="sum")
    return bce / fg.sum().clamp(min=1).to(probs.dtype)


# --- the training objective ----------------------------------------------------------


def _present(batch: Mapping[str, object], *keys: str) -> bool:
    """All of ``keys`` given (a None value counts as absent); a partial set is an error."""
    have = [batch.get(k) is not None for k in keys]
    if any(have) and not all(have):
        raise KeyError(f"batch must hold all of {keys} or none, got {[k for k, h in zip(keys, have) if h]}")
    return all(have)


def _output(out: Mapping[str, torch.Tensor], key: str, why: str) -> torch.Tensor:
    if key not in out:
        raise KeyError(f"model output has no {key!r}, but {why}")
    return out[key]


def compute_losses(
    out: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    cfg: ModelConfig,
    class_set: ClassSet,
    loss_cfg: LossConfig | None = None,
) -> dict[str, torch.Tensor]:
    """All enabled loss terms (already weighted) and their sum under "total".

    A term runs when its LossConfig switch is on, the model has the component
    (cfg.context_prior, cfg.cascade_head, cfg.depth.enabled) and the batch holds its
    targets. Optional batch keys, skipped when absent or None: ``relation`` (CRP),
    ``frustum_masks`` + ``frustum_dists`` (e.g. test steps), ``depth_labels`` +
    ``depth_fg`` (no depth teacher). ``target`` is required. Terms are added in the
    official order (relation, ssc, occ, depth, sem_scal, geo_scal, frustums).
    """
    lc = loss_cfg or LossConfig()
    ssc = out["ssc_logit"]
    device = ssc.device
    if ssc.shape[1] != class_set.n_classes or ssc.shape[1] != cfg.n_classes:
        raise ValueError(
            f"ssc_logit has {ssc.shape[1]} classes; config {cfg.n_classes}, class set {class_set.n_classes}"
        )
    target = batch["target"].to(device).long()
    if target.shape != (ssc.shape[0], *ssc.shape[2:]):
        raise ValueError(f"target {tuple(target.shape)} does not match ssc_logit {tuple(ssc.shape)}")
    ignore, empty = class_set.ignore_index, class_set.empty_index
    terms: dict[str, torch.Tensor] = {}

    if lc.relation and cfg.context_prior and _present(batch, "relation"):
        p_logits = _output(out, "P_logits", "cfg.context_prior is on")
        terms[KEY_RELATION] = lc.relation_weight * relation_loss(p_logits, batch["relation"].to(device))
    if lc.ssc_ce:
        weights = torch.as_tensor(class_set.class_weights(), dtype=torch.float32, device=device)
        terms[KEY_SSC] = lc.ssc_ce_weight * ce_ssc_loss(ssc, target, weights, ignore)
    if lc.occ_ce and cfg.cascade_head:
        occ = _output(out, "occ_logit", "cfg.cascade_head is on")
        weights = torch.as_tensor(class_set.occupancy_weights(), dtype=torch.float32, device=device)
        terms[KEY_OCC] = lc.occ_ce_weight * occ_ce_loss(occ, target, weights, empty, ignore)
    if lc.depth and cfg.depth.enabled and _present(batch, "depth_labels", "depth_fg"):
        depth = _output(out, "depth_logits", "cfg.depth.enabled is on")
        terms[KEY_DEPTH] = lc.depth_weight * depth_bce_loss(depth, batch["depth_labels"], batch["depth_fg"])
    if lc.sem_scal:
        terms[KEY_SEM_SCAL] = lc.sem_scal_weight * sem_scal_loss(ssc, target, ignore)
    if lc.geo_scal:
        terms[KEY_GEO_SCAL] = lc.geo_scal_weight * geo_scal_loss(ssc, target, empty, ignore)
    if lc.frustum and _present(batch, "frustum_masks", "frustum_dists"):
        terms[KEY_FRUSTUM] = lc.frustum_weight * frustum_proportion_loss(
            ssc, batch["frustum_masks"], batch["frustum_dists"]
        )

    total = _zero(ssc)
    for value in terms.values():
        total = total + value
    terms[KEY_TOTAL] = total
    return terms
