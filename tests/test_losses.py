"""Training losses against slow references.

References are written independently of the code under test: float64 per-voxel loops
that follow the official formulas (ssc_loss.py, CRP_loss.py, depth_loss.py and the
frustum block of OccDepth.step), or numbers worked out by hand.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from occdepth_ros.classes import load_class_set
from occdepth_ros.data.semantic_kitti import downsample_target
from occdepth_ros.model.config import GridConfig, ImageConfig, ModelConfig
from occdepth_ros.train.losses import (
    KEY_DEPTH,
    KEY_FRUSTUM,
    KEY_GEO_SCAL,
    KEY_OCC,
    KEY_RELATION,
    KEY_SEM_SCAL,
    KEY_SSC,
    KEY_TOTAL,
    LossConfig,
    ce_ssc_loss,
    compute_losses,
    depth_bce_loss,
    frustum_proportion_loss,
    geo_scal_loss,
    occ_ce_loss,
    relation_loss,
    sem_scal_loss,
)
from occdepth_ros.train.targets import depth_labels, local_frustums, relation_matrix

SHAPE = (2, 3, 4)

# --- float64 helpers for the references ----------------------------------------------


def softmax_list(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [v / s for v in e]


def voxel_probs(logits: torch.Tensor, float32: bool = False):
    """[(b, voxel) -> list of class probabilities] with voxels in C order; float64
    softmax, or torch's float32 softmax where underflow matters."""
    b, c = logits.shape[:2]
    flat = logits.detach().double().reshape(b, c, -1)
    if float32:
        p = torch.softmax(logits.detach().float().reshape(b, c, -1), dim=1).double()
        return [[p[i, :, n].tolist() for n in range(p.shape[2])] for i in range(b)]
    return [[softmax_list(flat[i, :, n].tolist()) for n in range(flat.shape[2])] for i in range(b)]


def bce_one(x: float) -> float:
    """torch BCE against target 1: -log x with log clamped at -100."""
    return -max(math.log(x) if x > 0 else -math.inf, -100.0)


def random_case(seed: int, n_classes: int = 4, batch: int = 2, shape=SHAPE, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, n_classes, *shape, generator=g) * scale).requires_grad_()
    target = torch.randint(0, n_classes, (batch, *shape), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    return logits, target


# --- references ----------------------------------------------------------------------


def ref_ce(logits, target, weights, ignore=255):
    probs = voxel_probs(logits)
    t = target.reshape(target.shape[0], -1).tolist()
    num = den = 0.0
    for b, row in enumerate(t):
        for n, lab in enumerate(row):
            if lab == ignore:
                continue
            num += weights[lab] * -math.log(probs[b][n][lab])
            den += weights[lab]
    return num / den


def ref_sem_scal(logits, target, ignore=255, float32=False):
    probs = voxel_probs(logits, float32)
    t = target.reshape(target.shape[0], -1).tolist()
    voxels = [(probs[b][n], lab) for b, row in enumerate(t) for n, lab in enumerate(row) if lab != ignore]
    loss, count = 0.0, 0
    for c in range(logits.shape[1]):
        p = [pv[c] for pv, _ in voxels]
        ct = [1.0 if lab == c else 0.0 for _, lab in voxels]
        if sum(ct) == 0:
            continue
        count += 1
        nominator = sum(pi * ti for pi, ti in zip(p, ct))
        if sum(p) > 0:
            loss += bce_one(nominator / sum(p))
        loss += bce_one(nominator / sum(ct))
        if sum(1 - ti for ti in ct) > 0:
            spec = sum((1 - pi) * (1 - ti) for pi, ti in zip(p, ct)) / sum(1 - ti for ti in ct)
            loss += bce_one(spec)
    return loss / count


def ref_geo_scal(logits, target, ignore=255):
    probs = voxel_probs(logits)
    t = target.reshape(target.shape[0], -1).tolist()
    inter = sum_full_p = n_full = n_empty = spec_num = 0.0
    for b, row in enumerate(t):
        for n, lab in enumerate(row):
            if lab == ignore:
                continue
            p_empty = probs[b][n][0]
            full = 1.0 if lab != 0 else 0.0
            inter += full * (1 - p_empty)
            sum_full_p += 1 - p_empty
            n_full += full
            n_empty += 1 - full
            spec_num += (1 - full) * p_empty
    return bce_one(inter / sum_full_p) + bce_one(inter / n_full) + bce_one(spec_num / n_empty)


def ref_relation(p_logits, relation):
    b, r, m, n = p_logits.shape
    x = p_logits.detach().double().tolist()
    y = relation.tolist()
    pos = [sum(y[i][k][j][l] for i in range(b) for j in range(m) for l in range(n)) for k in range(r)]
    neg = [b * m * n - pk for pk in pos]
    total = 0.0
    for i in range(b):
        for k in range(r):
            for j in range(m):
                for l in range(n):
                    xv, yv = x[i][k][j][l], y[i][k][j][l]
                    log_sig = -math.log1p(math.exp(-xv))
                    log_one_minus = -xv + log_sig
                    total += -(neg[k] / pos[k] * yv * log_sig + (1 - yv) * log_one_minus)
    return total / (b * r * m * n)


def ref_depth(depth_logits, labels, fg):
    b, _, d, h, w = depth_logits.shape
    x = depth_logits.detach().double()
    total, n_fg = 0.0, 0
    for i in range(b):
        for yy in range(h):
            for xx in range(w):
                cell = yy * w + xx
                if not fg[i, cell]:
                    continue
                n_fg += 1
                p = softmax_list(x[i, 0, :, yy, xx].tolist())
                for k in range(d):
                    yk = 1.0 if k == labels[i, cell] else 0.0
                    total += -(yk * math.log(p[k]) + (1 - yk) * math.log(1 - p[k]))
    return total / max(1, n_fg)


def ref_frustum(logits, masks, dists):
    """Official frustum block: per frustum, counts and probabilities pooled over the batch."""
    probs = voxel_probs(logits)
    b, c = logits.shape[:2]
    m = masks.reshape(b, masks.shape[1], -1).tolist()
    total, nonempty = 0.0, 0
    for f in range(masks.shape[1]):
        cnt = [sum(float(dists[i, f, k]) for i in range(b)) for k in range(c)]
        cum = [sum(probs[i][n][k] for i in range(b) for n in range(len(m[i][f])) if m[i][f][n]) for k in range(c)]
        if sum(cnt) > 0 and sum(cum) > 0:
            q = [v / sum(cnt) for v in cnt]
            p = [v / sum(cum) for v in cum]
            total += sum(qk * (math.log(qk) - math.log(pk)) for qk, pk in zip(q, p) if qk != 0)
            nonempty += 1
    return total / nonempty


def assert_finite_grad(loss: torch.Tensor, *leaves: torch.Tensor) -> None:
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
        assert leaf.grad.abs().sum() > 0


# --- cross entropies ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_ce_ssc_matches_weighted_mean_formula(seed):
    logits, target = random_case(seed)
    weights = torch.tensor([0.3, 1.0, 2.0, 0.7])
    got = ce_ssc_loss(logits, target, weights)
    assert got.item() == pytest.approx(ref_ce(logits, target, weights.tolist()), rel=1e-5)
    assert_finite_grad(got, logits)


def test_ce_ssc_all_ignored_is_zero_with_graph():
    logits, target = random_case(0)
    loss = ce_ssc_loss(logits, torch.full_like(target, 255), torch.ones(4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_occ_ce_maps_classes_to_occupied_and_keeps_ignore():
    logits, target = random_case(3, n_classes=2)
    sem_target = target.clone()
    sem_target[target == 1] = 3  # classes 1.. all become "occupied"
    sem_target[0, 0, 0, 0] = 255
    weights = torch.tensor([0.044617, 0.050468])
    want_target = sem_target.clone()
    want_target[(sem_target != 0) & (sem_target != 255)] = 1
    got = occ_ce_loss(logits, sem_target, weights)
    assert got.item() == pytest.approx(ref_ce(logits, want_target, weights.tolist()), rel=1e-5)
    assert_finite_grad(got, logits)


# --- scene-class affinity ------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sem_scal_matches_official_loops(seed):
    logits, target = random_case(seed, n_classes=5)
    target[target == 4] = 0  # class 4 absent: it must not count
    got = sem_scal_loss(logits, target)
    assert got.item() == pytest.approx(ref_sem_scal(logits, target), rel=1e-5)
    assert_finite_grad(got, logits)


def test_sem_scal_single_class_skips_specificity():
    logits, _ = random_case(4, n_classes=3)
    target = torch.ones(2, *SHAPE, dtype=torch.long)
    target[0, 0, 0, :2] = 255
    got = sem_scal_loss(logits, target)
    assert got.item() == pytest.approx(ref_sem_scal(logits, target), rel=1e-5)
    # precision of the only class is 1, so only recall remains
    p1 = [v[1] for row in voxel_probs(logits) for v in row]
    mask = (target != 255).reshape(-1).tolist()
    recall = sum(p for p, keep in zip(p1, mask) if keep) / sum(mask)
    assert got.item() == pytest.approx(-math.log(recall), rel=1e-5)


def test_sem_scal_saturates_at_log_clamp():
    """p(class 1) = exp(-200) underflows to 0 in float32: class 1's precision is
    skipped (official: only if sum p > 0), its recall and class 0's specificity hit
    torch BCE's -100 log clamp; class 0's precision is 1/2."""
    logits = torch.zeros(1, 2, 1, 1, 2)
    logits[0, 0] = 200.0
    target = torch.tensor([0, 1]).reshape(1, 1, 1, 2)
    got = sem_scal_loss(logits, target)
    assert got.item() == pytest.approx(ref_sem_scal(logits, target, float32=True), rel=1e-6)
    assert got.item() == pytest.approx((math.log(2) + 100 + 100) / 2, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 5])
def test_geo_scal_matches_official_loops(seed):
    logits, target = random_case(seed)
    got = geo_scal_loss(logits, target)
    assert got.item() == pytest.approx(ref_geo_scal(logits, target), rel=1e-5)
    assert_finite_grad(got, logits)


def test_scal_losses_degenerate_targets_stay_finite():
    logits, target = random_case(6)
    for t in (torch.full_like(target, 255), torch.zeros_like(target), torch.ones_like(target)):
        for fn in (sem_scal_loss, geo_scal_loss):
            loss = fn(logits, t)
            assert torch.isfinite(loss)
            logits.grad = None
            loss.backward()
            assert torch.isfinite(logits.grad).all()


# --- frustum proportion ------------------------------------------------------------


def test_frustum_kl_by_hand():
    """One sample, 3 classes, 4 voxels. Frustum 0 holds voxels {0, 1}, frustum 1 is
    empty, frustum 2 holds voxel 3 only."""
    logits = torch.log(
        torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3], [1 / 3, 1 / 3, 1 / 3], [0.2, 0.2, 0.6]])
    ).T.reshape(1, 3, 1, 2, 2)
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool).reshape(1, 3, 1, 2, 2)
    dists = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    # frustum 0: p = (0.6, 0.85, 0.55) / 2 = (0.3, 0.425, 0.275), q = (0.5, 0.5, 0)
    kl0 = 0.5 * math.log(0.5 / 0.3) + 0.5 * math.log(0.5 / 0.425)
    # frustum 2: p = (0.2, 0.2, 0.6), q = (0, 0, 1)
    kl2 = math.log(1 / 0.6)
    got = frustum_proportion_loss(logits, masks, dists)
    assert got.item() == pytest.approx((kl0 + kl2) / 2, rel=1e-5)


def _random_frustums(seed: int, batch: int, n_frustums: int, n_classes: int, target: torch.Tensor):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(batch, n_frustums, *target.shape[1:], generator=g) < 0.4
    masks &= (target != 255)[:, None]
    masks[:, -1] = False  # an empty frustum
    dists = torch.zeros(batch, n_frustums, n_classes)
    for b in range(batch):
        for f in range(n_frustums):
            for lab in target[b][masks[b, f]].tolist():
                dists[b, f, lab] += 1
    return masks, dists


def test_frustum_matches_official_loop_and_pools_the_batch():
    logits, target = random_case(8, n_classes=5)
    masks, dists = _random_frustums(8, 2, 6, 5, target)
    got = frustum_proportion_loss(logits, masks, dists)
    assert got.item() == pytest.approx(ref_frustum(logits, masks, dists), rel=1e-5)
    per_sample = sum(ref_frustum(logits[i : i + 1], masks[i : i + 1], dists[i : i + 1]) for i in range(2)) / 2
    assert abs(got.item() - per_sample) > 1e-4  # pooling is not the per-sample mean
    assert_finite_grad(got, logits)


def test_frustum_all_empty_is_zero():
    logits, target = random_case(9)
    masks = torch.zeros(2, 3, *SHAPE, dtype=torch.bool)
    loss = frustum_proportion_loss(logits, masks, torch.zeros(2, 3, 4))
    assert loss.item() == 0.0 and loss.requires_grad


# --- relations ---------------------------------------------------------------------


def test_relation_pos_weight_by_hand():
    """Relation 0 has 1 positive of 4 -> pos_weight 3; relation 1 has 2 of 4 -> 1."""
    logits = torch.tensor([[[[0.0, 1.0, -1.0, 2.0]], [[0.5, 0.5, -0.5, 0.0]]]])  # (1, 2, 1, 4)
    labels = torch.tensor([[[[1, 0, 0, 0]], [[1, 1, 0, 0]]]], dtype=torch.uint8)

    def sp(x):  # softplus = -log sigmoid(-x)
        return math.log1p(math.exp(x))

    rel0 = 3 * sp(-0.0) + sp(1.0) + sp(-1.0) + sp(2.0)
    rel1 = sp(-0.5) + sp(-0.5) + sp(-0.5) + sp(0.0)
    assert relation_loss(logits, labels).item() == pytest.approx((rel0 + rel1) / 8, rel=1e-6)


def test_relation_loss_matches_loops_on_real_relations():
    g = torch.Generator().manual_seed(0)
    rels = []
    for seed in (1, 2):
        t = np.random.default_rng(seed).integers(0, 4, size=(4, 4, 2))
        t[np.random.default_rng(seed + 10).random(t.shape) < 0.2] = 255
        rels.append(relation_matrix(t))
    relation = torch.from_numpy(np.stack(rels))  # (2, 4, 4, 32) uint8
    logits = torch.randn(relation.shape, generator=g).requires_grad_()
    got = relation_loss(logits, relation)
    assert got.item() == pytest.approx(ref_relation(logits, relation), rel=1e-5)
    assert_finite_grad(got, logits)


def test_relation_without_positives_is_plain_bce():
    logits = torch.randn(1, 2, 2, 3)
    labels = torch.zeros(1, 2, 2, 3)
    labels[0, 1, 0, 0] = 1  # relation 0 has no positives
    got = relation_loss(logits, labels)
    assert torch.isfinite(got)
    rel0 = torch.nn.functional.softplus(logits[0, 0]).sum()
    rel1 = 5 * torch.nn.functional.softplus(-logits[0, 1, 0, 0]) + torch.nn.functional.softplus(logits[0, 1]).sum()
    rel1 -= torch.nn.functional.softplus(logits[0, 1, 0, 0])
    assert got.item() == pytest.approx(((rel0 + rel1) / 12).item(), rel=1e-5)


# --- depth -------------------------------------------------------------------------


def test_depth_bce_matches_loops_left_view_only():
    g = torch.Generator().manual_seed(0)
    b, v, d, h, w = 2, 2, 6, 3, 4
    logits = torch.randn(b, v, d, h, w, generator=g).requires_grad_()
    labels = torch.randint(0, d, (b, h * w), generator=g)
    fg = torch.rand(b, h * w, generator=g) < 0.6
    labels[~fg] = -1
    got = depth_bce_loss(logits, labels, fg)
    assert got.item() == pytest.approx(ref_depth(logits, labels, fg), rel=1e-5)
    changed = logits.detach().clone()
    changed[:, 1] = torch.randn(b, d, h, w, generator=g)  # the right view is not supervised
    assert depth_bce_loss(changed, labels, fg).item() == pytest.approx(got.item(), rel=1e-6)
    assert_finite_grad(got, logits)
    assert logits.grad[:, 1].abs().sum() == 0


def test_depth_bce_without_foreground_is_zero():
    logits = torch.randn(1, 1, 4, 2, 2, requires_grad=True)
    loss = depth_bce_loss(logits, torch.full((1, 4), -1), torch.zeros(1, 4, dtype=torch.bool))
    assert loss.item() == 0.0
    with pytest.raises(ValueError):
        depth_bce_loss(logits, torch.full((1, 4), 4), torch.ones(1, 4, dtype=torch.bool))


# --- compute_losses ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cfg() -> ModelConfig:
    return ModelConfig(grid=GridConfig(dims=(16, 8, 8), project_scale=1), image=ImageConfig(height=64, width=96))


def make_batch(cfg: ModelConfig, seed: int = 0, batch: int = 2):
    """Targets built the way the dataset will: targets.py on per-sample numpy arrays."""
    rng = np.random.default_rng(seed)
    g = cfg.grid
    dims = g.dims
    n_classes = cfg.n_classes
    h_d, w_d = 8, 12
    targets, rels, fmasks, fdists, dlabels, dfg = [], [], [], [], [], []
    for _ in range(batch):
        t = rng.integers(0, n_classes, size=dims)
        t[rng.random(dims) < 0.5] = 0
        t[rng.random(dims) < 0.1] = 255
        targets.append(t)
        rels.append(relation_matrix(downsample_target(t, g.project_scale * 4)))
        n = int(np.prod(dims))
        pix = np.stack([rng.integers(0, cfg.image.width, (2, n)), rng.integers(0, cfg.image.height, (2, n))], -1)
        fov = rng.random((2, n)) < 0.7
        m, dist = local_frustums(pix, fov, np.ones((2, n)), t, (cfg.image.height, cfg.image.width), n_classes)
        fmasks.append(m)
        fdists.append(dist)
        depth = rng.uniform(0.0, 60.0, size=(cfg.image.height, cfg.image.width)).astype(np.float32)
        lab, fg = depth_labels(depth, cfg.depth.d_min, cfg.depth.d_max, cfg.depth.d_step, 8, (h_d, w_d))
        dlabels.append(lab)
        dfg.append(fg)
    return {
        "target": torch.as_tensor(np.stack(targets)),
        "relation": torch.as_tensor(np.stack(rels)),
        "frustum_masks": torch.as_tensor(np.stack(fmasks)),
        "frustum_dists": torch.as_tensor(np.stack(fdists)),
        "depth_labels": torch.as_tensor(np.stack(dlabels)),
        "depth_fg": torch.as_tensor(np.stack(dfg)),
    }


def make_out(cfg: ModelConfig, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    dims = cfg.grid.dims
    coarse = [d // cfg.grid.project_scale // 4 for d in dims]
    n3 = int(np.prod(coarse))
    out = {
        "ssc_logit": torch.randn(batch, cfg.n_classes, *dims, generator=g),
        "occ_logit": torch.randn(batch, 2, *dims, generator=g),
        "P_logits": torch.randn(batch, cfg.n_relations, n3 // 8, n3, generator=g),
        "depth_logits": torch.randn(batch, cfg.n_views, cfg.depth.n_bins, 8, 12, generator=g),
    }
    return {k: v.requires_grad_() for k, v in out.items()}


ALL_KEYS = {KEY_RELATION, KEY_SSC, KEY_OCC, KEY_DEPTH, KEY_SEM_SCAL, KEY_GEO_SCAL, KEY_FRUSTUM, KEY_TOTAL}


def test_compute_losses_all_terms_finite_and_summed(tiny_cfg):
    out, batch = make_out(tiny_cfg), make_batch(tiny_cfg)
    assert batch["relation"].shape == out["P_logits"].shape
    losses = compute_losses(out, batch, tiny_cfg, load_class_set())
    assert set(losses) == ALL_KEYS
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    parts = sum(v.item() for k, v in losses.items() if k != KEY_TOTAL)
    assert losses[KEY_TOTAL].item() == pytest.approx(parts, rel=1e-6)
    losses[KEY_TOTAL].backward()
    for key, tensor in out.items():
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0, key


def test_compute_losses_uses_the_class_set_weights(tiny_cfg):
    """CE terms against the hand-listed KITTI weights of the official code, computed by loops."""
    out, batch = make_out(tiny_cfg, batch=1, seed=2), make_batch(tiny_cfg, seed=2, batch=1)
    small = {k: v[:, :, :4] if k in ("ssc_logit", "occ_logit") else v for k, v in out.items()}
    small_batch = {"target": batch["target"][:, :4]}
    cfg = dataclasses.replace(tiny_cfg, context_prior=False, depth=dataclasses.replace(tiny_cfg.depth, enabled=False))
    lc = LossConfig(sem_scal=False, geo_scal=False)
    losses = compute_losses(small, small_batch, cfg, load_class_set(), lc)
    assert set(losses) == {KEY_SSC, KEY_OCC, KEY_TOTAL}
    w = [0.044617, 0.060334, 0.085200, 0.085578, 0.074740, 0.073424, 0.080129, 0.079645, 0.081769, 0.055749,
         0.065273, 0.056755, 0.068328, 0.056004, 0.060348, 0.052964, 0.068781, 0.057387, 0.071649, 0.078620]
    assert losses[KEY_SSC].item() == pytest.approx(ref_ce(small["ssc_logit"], small_batch["target"], w), rel=1e-4)
    occ_t = small_batch["target"].clone()
    occ_t[(occ_t != 0) & (occ_t != 255)] = 1
    assert losses[KEY_OCC].item() == pytest.approx(ref_ce(small["occ_logit"], occ_t, [0.044617, 0.050468]), rel=1e-4)


def test_compute_losses_skips_absent_terms(tiny_cfg):
    out, batch = make_out(tiny_cfg), make_batch(tiny_cfg)
    cs = load_class_set()
    no_teacher = {k: v for k, v in batch.items() if k not in ("depth_labels", "depth_fg")}
    assert set(compute_losses(out, no_teacher, tiny_cfg, cs)) == ALL_KEYS - {KEY_DEPTH}
    test_step = dict(batch, frustum_masks=None, frustum_dists=None, relation=None)
    assert set(compute_losses(out, test_step, tiny_cfg, cs)) == ALL_KEYS - {KEY_FRUSTUM, KEY_RELATION}
    off = LossConfig(sem_scal=False, occ_ce=False, depth=False)
    assert set(compute_losses(out, batch, tiny_cfg, cs, off)) == ALL_KEYS - {KEY_SEM_SCAL, KEY_OCC, KEY_DEPTH}
    weighted = compute_losses(out, batch, tiny_cfg, cs, LossConfig(geo_scal_weight=0.5))
    plain = compute_losses(out, batch, tiny_cfg, cs)
    assert weighted[KEY_GEO_SCAL].item() == pytest.approx(0.5 * plain[KEY_GEO_SCAL].item())
    mono = dataclasses.replace(tiny_cfg, cascade_head=False, context_prior=False)
    bare = {"ssc_logit": out["ssc_logit"]}
    assert set(compute_losses(bare, {"target": batch["target"]}, mono, cs)) == {
        KEY_SSC, KEY_SEM_SCAL, KEY_GEO_SCAL, KEY_TOTAL
    }


def test_compute_losses_rejects_inconsistent_inputs(tiny_cfg):
    out, batch = make_out(tiny_cfg), make_batch(tiny_cfg)
    cs = load_class_set()
    with pytest.raises(KeyError):  # cascade head on, but no occ_logit
        compute_losses({k: v for k, v in out.items() if k != "occ_logit"}, batch, tiny_cfg, cs)
    with pytest.raises(KeyError):  # half of the depth targets
        compute_losses(out, dict(batch, depth_fg=None), tiny_cfg, cs)
    with pytest.raises(ValueError):
        compute_losses(out, dict(batch, target=batch["target"][:, :-1]), tiny_cfg, cs)
