"""Gradient-combination methods: MGDA, PCGrad, CAGrad, IMTL-G, Nash-MTL, GradDrop, GradVac, ConFIG, UPGrad,
DualProj, Aligned-MTL, DB-MTL, MetaBalance, FairGrad, ExcessMTL, MoCo, SDMGrad, MoDo."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from sklearn_mtr import MMoEClassifier, PLEClassifier, SharedBottomClassifier
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.models import MultiTaskModule
from sklearn_mtr.optim import StepContext
from sklearn_mtr.optim._combination import (
    conflict_averse_weights,
    min_norm_weights,
    project_onto_simplex,
    project_simplex,
    simplex_qp,
)
from sklearn_mtr.optim.aligned_mtl import AlignedMTL
from sklearn_mtr.optim.cagrad import CAGrad
from sklearn_mtr.optim.config import ConFIG
from sklearn_mtr.optim.db_mtl import DBMTL
from sklearn_mtr.optim.dualproj import DualProj
from sklearn_mtr.optim.excess_mtl import ExcessMTL
from sklearn_mtr.optim.fairgrad import FairGrad
from sklearn_mtr.optim.graddrop import GradDrop, drop_signs
from sklearn_mtr.optim.gradvac import GradVac
from sklearn_mtr.optim.imtl_g import IMTLG
from sklearn_mtr.optim.metabalance import MetaBalance
from sklearn_mtr.optim.mgda import MGDA
from sklearn_mtr.optim.moco import MoCo
from sklearn_mtr.optim.modo import MoDo
from sklearn_mtr.optim.nash_mtl import NashMTL
from sklearn_mtr.optim.pcgrad import PCGrad
from sklearn_mtr.optim.sdmgrad import SDMGrad
from sklearn_mtr.optim.upgrad import UPGrad

METHODS = [
    MGDA(),
    PCGrad(),
    CAGrad(),
    IMTLG(),
    NashMTL(),
    GradDrop(),
    GradVac(),
    ConFIG(),
    UPGrad(),
    DualProj(),
    AlignedMTL(),
    DBMTL(),
    MetaBalance(),
    FairGrad(),
    ExcessMTL(),
    MoCo(),
    SDMGrad(),
    MoDo(),
]
IDS = [type(m).__name__ for m in METHODS]


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------------------------------
# PCGrad
# ---------------------------------------------------------------------------------------
def test_pcgrad_projects_conflicting_gradients_onto_normal_planes():
    g = t([[1.0, 0.0], [-1.0, 1.0]])  # g1 . g2 = -1 < 0
    direction, coef = PCGrad().combine(g)
    # g1' = g1 - (g1.g2)/|g2|^2 g2 = (0.5, 0.5);  g2' = g2 - (g2.g1)/|g1|^2 g1 = (0, 1)
    torch.testing.assert_close(direction, t([0.5, 1.5]))
    torch.testing.assert_close(coef @ g, direction)
    torch.testing.assert_close(coef, t([2.0, 1.5]))
    # Each projected gradient is orthogonal to the gradient it conflicted with.
    assert abs(float(t([0.5, 0.5]) @ g[1])) < 1e-12 and abs(float(t([0.0, 1.0]) @ g[0])) < 1e-12
    # Without conflict, PCGrad is the plain sum (or mean).
    g = t([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(PCGrad().combine(g)[0], t([2.0, 1.0]))
    torch.testing.assert_close(PCGrad(reduction="mean").combine(g)[0], t([1.0, 0.5]))


def _pcgrad_reference(g, orders):
    out = []
    for i, order in enumerate(orders):
        gi = g[i].clone()
        for j in order:
            dot = gi @ g[j]
            if dot < 0:
                gi = gi - dot / (g[j] @ g[j]) * g[j]
        out.append(gi)
    return torch.stack(out).sum(0)


def test_pcgrad_three_tasks_follow_one_random_order_per_task_and_are_seeded():
    g = t([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.1], [-0.5, -0.9, 1.0]])
    candidates = [
        _pcgrad_reference(g, orders)
        for orders in itertools.product(
            *[list(itertools.permutations([j for j in range(3) if j != i])) for i in range(3)]
        )
    ]
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        direction, _ = PCGrad().combine(g)
        matches = [k for k, c in enumerate(candidates) if torch.allclose(direction, c, atol=1e-12)]
        assert matches, "the result is not PCGrad for any projection order"
        seen.add(tuple(np.round(direction.numpy(), 10)))
        torch.manual_seed(seed)
        torch.testing.assert_close(PCGrad().combine(g)[0], direction)  # same seed, same orders
    assert len(seen) > 1  # the orders really are random


# ---------------------------------------------------------------------------------------
# MGDA
# ---------------------------------------------------------------------------------------
def test_mgda_two_task_closed_form():
    g = t([[2.0, 0.0], [0.0, 1.0]])
    direction, lam = MGDA().combine(g)
    # gamma = (|g2|^2 - g1.g2) / |g1 - g2|^2 = 1/5
    torch.testing.assert_close(lam, t([0.2, 0.8]))
    torch.testing.assert_close(direction, t([0.4, 0.8]))
    # Interior min-norm point: equal inner product with both gradients (= its squared norm).
    torch.testing.assert_close(g @ direction, t([0.8, 0.8]))
    # Vertex case: the segment's closest point to the origin is g1 itself.
    g = t([[1.0, 0.0], [2.0, 1.0]])
    torch.testing.assert_close(MGDA().combine(g)[1], t([1.0, 0.0]))
    # Random pairs: the closed form equals brute force over the segment.
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 20001)
    for _ in range(20):
        v = rng.normal(size=(2, 5))
        w = min_norm_weights(v @ v.T)
        pts = grid[:, None] * v[0] + (1 - grid[:, None]) * v[1]
        assert np.linalg.norm(w @ v) <= np.linalg.norm(pts, axis=1).min() + 1e-9


def test_mgda_conflicting_gradients_and_more_tasks():
    # Opposite-ish gradients: the min-norm point is the point of the segment nearest 0.
    g = t([[1.0, 1.0], [-1.0, 0.0]])
    direction, lam = MGDA().combine(g)
    torch.testing.assert_close(lam, t([0.4, 0.6]))  # (|g2|^2 - g1.g2) / |g1 - g2|^2 = 2 / 5
    torch.testing.assert_close(direction, t([-0.2, 0.4]))
    assert float(direction @ (g[0] - g[1])) == pytest.approx(0.0, abs=1e-12)
    # Three tasks: the third gradient lies beyond the first two's segment.
    g = t([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    torch.testing.assert_close(MGDA().combine(g)[1], t([0.5, 0.5, 0.0]))
    # The origin inside the hull: Pareto-stationary, the step vanishes.
    g = t([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    direction, lam = MGDA().combine(g)
    torch.testing.assert_close(lam, t([1 / 3, 1 / 3, 1 / 3]))
    assert float(direction.norm()) < 1e-12


def test_mgda_normalizations_choose_weights_on_normalised_gradients():
    g = t([[2.0, 0.0], [0.0, 1.0]])
    direction, lam = MGDA(normalization="l2").combine(g)
    torch.testing.assert_close(lam, t([0.5, 0.5]))  # unit gradients are symmetric
    torch.testing.assert_close(direction, t([1.0, 0.5]))  # applied to the raw gradients
    losses = t([1.0, 0.5])
    # loss+: g / (L |g|) = (1, 0) and (0, 2) -> gamma = 4 / 5
    lam = MGDA(normalization="loss+").combine(g, losses)[1]
    torch.testing.assert_close(lam, t([0.8, 0.2]))
    # loss: g / L = (2, 0) and (0, 2) -> symmetric
    torch.testing.assert_close(MGDA(normalization="loss").combine(g, losses)[1], t([0.5, 0.5]))
    with pytest.raises(ValueError, match="needs the task losses"):
        MGDA(normalization="loss").combine(g)


def test_min_norm_solver_matches_brute_force_on_three_tasks():
    rng = np.random.default_rng(1)
    simplex = np.array(
        [(a, b, 1 - a - b) for a in np.linspace(0, 1, 201) for b in np.linspace(0, 1, 201) if a + b <= 1]
    )
    for _ in range(10):
        v = rng.normal(size=(3, 4))
        w = min_norm_weights(v @ v.T)
        assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
        assert np.linalg.norm(w @ v) <= np.linalg.norm(simplex @ v, axis=1).min() + 1e-12


# ---------------------------------------------------------------------------------------
# CAGrad
# ---------------------------------------------------------------------------------------
def test_cagrad_with_c_zero_is_the_average_gradient():
    g = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for rescale in (True, False):
        direction, coef = CAGrad(c=0.0, rescale=rescale).combine(g)
        torch.testing.assert_close(direction, g.mean(0))
        torch.testing.assert_close(coef, torch.full((3,), 1 / 3, dtype=torch.float64))


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_cagrad_maximises_the_worst_improvement_in_the_ball(n_tasks):
    rng = np.random.default_rng(n_tasks)
    c = 0.5
    for _ in range(5):
        g = torch.from_numpy(rng.normal(size=(n_tasks, n_tasks)))
        g[1] = -0.7 * g[0] + 0.3 * g[1]  # make a conflict
        g0 = g.mean(0)
        radius = c * float(g0.norm())
        d, _ = CAGrad(c=c, rescale=False).combine(g)
        assert float((d - g0).norm()) <= radius * (1 + 1e-9)
        worst = float((g @ d).min())
        # Brute force over the boundary of the ball (the optimum lies on it).
        u = torch.from_numpy(rng.normal(size=(200000, n_tasks)))
        candidates = g0 + radius * u / u.norm(dim=1, keepdim=True)
        assert worst >= float((candidates @ g.T).min(1).values.max()) - 1e-6
        # rescale divides by 1 + c^2 (the authors' default)
        torch.testing.assert_close(CAGrad(c=c).combine(g)[0], d / (1 + c**2))


def test_cagrad_two_task_closed_form_matches_a_grid():
    rng = np.random.default_rng(3)
    p = np.linspace(0, 1, 100001)
    for _ in range(20):
        v = rng.normal(size=(2, 3))
        G = v @ v.T
        b, s = G.mean(1), 0.4 * np.linalg.norm(v.mean(0))
        w = conflict_averse_weights(G, b, s)
        W = np.stack([p, 1 - p], 1)
        values = W @ b + s * np.sqrt(np.einsum("ij,jk,ik->i", W, G, W))
        assert w @ b + s * np.sqrt(w @ G @ w) <= values.min() + 1e-9


# ---------------------------------------------------------------------------------------
# IMTL-G
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_tasks", [2, 3, 4])
def test_imtl_g_gives_equal_projections_on_unit_gradients(n_tasks):
    gen = torch.Generator().manual_seed(n_tasks)
    g = (
        torch.randn(n_tasks, 6, dtype=torch.float64, generator=gen)
        * torch.tensor([1.0, 5.0, 0.2, 2.0][:n_tasks])[:, None]
    )
    d, alpha = IMTLG().combine(g)
    torch.testing.assert_close(alpha @ g, d)
    assert float(alpha.sum()) == pytest.approx(1.0)
    projections = (g / g.norm(dim=1, keepdim=True)) @ d
    torch.testing.assert_close(projections, projections[0].expand(n_tasks))
    if n_tasks == 2:  # closed form: alpha proportional to the other task's norm
        norms = g.norm(dim=1)
        torch.testing.assert_close(alpha, norms.flip(0) / norms.sum())


# ---------------------------------------------------------------------------------------
# Nash-MTL
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_tasks", [2, 3, 4])
def test_nash_mtl_weights_solve_the_bargaining_condition(n_tasks):
    g = torch.randn(n_tasks, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(n_tasks))
    d, alpha = NashMTL().combine(g)
    G = g @ g.T
    assert bool((alpha > 0).all())
    torch.testing.assert_close(G @ alpha.double(), 1 / alpha.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d, alpha @ g)
    assert float(d.norm() ** 2) == pytest.approx(n_tasks, rel=1e-5)  # ||d||^2 = T at the solution


# ---------------------------------------------------------------------------------------
# GradDrop
# ---------------------------------------------------------------------------------------
def test_graddrop_keeps_one_sign_per_coordinate_by_purity():
    g = t([[2.0, -1.0, 1.0, 0.0], [-2.0, -3.0, 1.0, 4.0]])
    # purity P = 0.5 (1 + sum g / sum |g|) = (0.5, 0, 1, 1)
    u = t([0.4, 0.4, 0.9, 0.1])
    direction, factors = drop_signs(g, u)
    # coordinate 0: P = 0.5 > U = 0.4 keeps the positive gradient; 1-3: every task agrees
    torch.testing.assert_close(direction, t([2.0, -4.0, 2.0, 4.0]))
    torch.testing.assert_close(factors[:, 0], t([1.0, 0.0]))
    u[0] = 0.6  # P < U keeps the negative one
    torch.testing.assert_close(drop_signs(g, u)[0], t([-2.0, -4.0, 2.0, 4.0]))
    # leak l: every gradient passes with weight l, the kept ones with 1
    torch.testing.assert_close(drop_signs(g, u, leak=0.5)[0], t([-1.0, -4.0, 2.0, 4.0]))
    torch.testing.assert_close(drop_signs(g, u, leak=1.0)[0], g.sum(0))


def test_graddrop_keeps_the_positive_side_with_probability_purity_and_is_seeded():
    g = t([[3.0, 1.0], [-1.0, 1.0]])  # P = (0.75, 1)
    method = GradDrop()
    torch.manual_seed(0)
    state = method.create_state(None, 2)
    draws = torch.stack([method.combine(g, state=state)[0] for _ in range(4000)])
    assert set(draws[:, 0].tolist()) == {3.0, -1.0} and bool((draws[:, 1] == 2.0).all())
    assert float((draws[:, 0] == 3.0).double().mean()) == pytest.approx(0.75, abs=0.03)
    for _ in range(20):  # the diagnostic weights: the share of each task's |g_i| that was kept
        d, kept = method.combine(g, state=state)
        torch.testing.assert_close(kept, t([1.0, 0.5]) if float(d[0]) > 0 else t([0.25, 1.0]))
    torch.manual_seed(1)
    first = torch.stack([GradDrop().combine(g)[0] for _ in range(20)])
    torch.manual_seed(1)
    torch.testing.assert_close(torch.stack([GradDrop().combine(g)[0] for _ in range(20)]), first)  # seeded
    assert len(set(first[:, 0].tolist())) == 2


# ---------------------------------------------------------------------------------------
# GradVac
# ---------------------------------------------------------------------------------------
def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def test_gradvac_raises_each_cosine_to_its_target_and_updates_the_ema():
    # Unit gradients at 120 degrees (cos -0.5), targets 0: a_ij = (0 - (-0.5) * 1) / 1 = 0.5,
    # i.e. PCGrad's projection.
    g = t([[1.0, 0.0], [-0.5, math.sqrt(3) / 2]])
    method = GradVac(beta=0.25)
    state = method.create_state(None, 2)
    direction, coef = method.combine(g, state=state)
    torch.testing.assert_close(coef, t([1.5, 1.5]))
    torch.testing.assert_close(direction, PCGrad().combine(g)[0])
    torch.testing.assert_close(
        state.target_cosine, torch.tensor([[0.0, -0.125], [-0.125, 0.0]])
    )  # 0.75 * 0 + 0.25 * -0.5
    # Any targets: g_i + a_ij g_j has cosine exactly phi_hat_ij with g_j.
    rng = np.random.default_rng(0)
    for _ in range(10):
        g = torch.from_numpy(rng.normal(size=(2, 5)))
        phi_hat = rng.uniform(-0.9, 0.9, size=2)
        state.target_cosine.copy_(torch.tensor([[0.0, phi_hat[0]], [phi_hat[1], 0.0]]))
        phi = _cos(g[0], g[1])
        _, coef = method.combine(g, state=state)
        for i, j in ((0, 1), (1, 0)):
            a = float(coef[j]) - 1.0  # coefficient of g_j in the modified g_i
            if phi < phi_hat[i]:
                assert _cos(g[i] + a * g[j], g[j]) == pytest.approx(phi_hat[i], abs=1e-6)
            else:
                assert a == 0.0  # already above the target: unchanged
            expected = 0.75 * phi_hat[i] + 0.25 * phi
            assert float(state.target_cosine[i, j]) == pytest.approx(expected, abs=1e-6)


def _gradvac_reference(g, target, orders, beta):
    """Algorithm 1 of the paper, literally, for given orders."""
    target = target.clone()
    out = []
    for i, order in enumerate(orders):
        gi = g[i].clone()
        for j in order:
            phi = _cos(gi, g[j])
            phi_hat = float(target[i, j])
            if phi < phi_hat:
                gi = (
                    gi
                    + gi.norm()
                    * (phi_hat * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - phi_hat**2))
                    / (g[j].norm() * math.sqrt(1 - phi_hat**2))
                    * g[j]
                )
            target[i, j] = (1 - beta) * phi_hat + beta * phi
        out.append(gi)
    return torch.stack(out).sum(0), target


def test_gradvac_three_tasks_follow_algorithm_1_in_one_random_order_per_task():
    g = t([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.1], [-0.5, -0.9, 1.0]])
    start = torch.tensor([[0.0, 0.3, -0.2], [0.1, 0.0, 0.4], [0.5, -0.1, 0.0]], dtype=torch.float64)
    orders = itertools.product(*[list(itertools.permutations([j for j in range(3) if j != i])) for i in range(3)])
    candidates = [_gradvac_reference(g, start, o, 0.1) for o in orders]
    for seed in range(6):
        torch.manual_seed(seed)
        method = GradVac(beta=0.1)
        state = method.create_state(None, 3)
        state.target_cosine.copy_(start)
        direction, coef = method.combine(g, state=state)
        torch.testing.assert_close(coef @ g, direction)
        matches = [
            k
            for k, (d, target) in enumerate(candidates)
            if torch.allclose(direction, d, atol=1e-10)
            and torch.allclose(state.target_cosine.double(), target, atol=1e-6)
        ]
        assert matches, "the result is not GradVac's Algorithm 1 for any order"


# ---------------------------------------------------------------------------------------
# ConFIG
# ---------------------------------------------------------------------------------------
def test_config_hand_example():
    g = t([[1.0, 0.0], [0.0, 2.0]])
    # unit gradients e1, e2: g_u = pinv(U) 1 = (1, 1); length (g_1 + g_2) . g_u / |g_u| = 3 / sqrt(2)
    direction, coef = ConFIG().combine(g)
    torch.testing.assert_close(direction, t([1.5, 1.5]))
    torch.testing.assert_close(coef, t([1.5, 0.75]))


@pytest.mark.parametrize("n_tasks", [2, 3, 4])
def test_config_has_an_equal_cosine_with_every_task_gradient(n_tasks):
    gen = torch.Generator().manual_seed(n_tasks)
    for _ in range(5):
        g = torch.randn(n_tasks, 7, dtype=torch.float64, generator=gen) * t([1.0, 5.0, 0.2, 2.0][:n_tasks])[:, None]
        g[1] = -0.8 * g[0] + 0.3 * g[1]  # a conflict
        d, coef = ConFIG().combine(g)
        torch.testing.assert_close(coef @ g, d)
        cosines = (g @ d) / (g.norm(dim=1) * d.norm())
        torch.testing.assert_close(cosines, cosines[0].expand(n_tasks))
        assert float(cosines[0]) > 0  # a descent direction for every task
        # the paper's equation on the full matrix: (sum_i g_i . unit(g_u)) unit(g_u), g_u = pinv(U) 1
        units = g / g.norm(dim=1, keepdim=True)
        g_u = torch.linalg.pinv(units) @ torch.ones(n_tasks, dtype=torch.float64)
        g_u = g_u / g_u.norm()
        torch.testing.assert_close(d, (g @ g_u).sum() * g_u)


# ---------------------------------------------------------------------------------------
# UPGrad, DualProj
# ---------------------------------------------------------------------------------------
def _project_onto_dual_cone(g, x):
    """argmin_y ||y - x||^2 s.t. g y >= 0, solved in the parameter space (no Gram matrix)."""
    from scipy.optimize import minimize

    g, x = g.numpy(), x.numpy()
    res = minimize(
        lambda y: float((y - x) @ (y - x)),
        x.copy(),
        jac=lambda y: 2 * (y - x),
        constraints=[{"type": "ineq", "fun": lambda y: g @ y, "jac": lambda y: g}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert res.success, res.message
    return torch.from_numpy(res.x)


def test_upgrad_and_dualproj_hand_example():
    # TorchJD's documented example, solved by hand: g_1 . g_2 = -22 < 0.
    g = t([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    # pi(g_1) = g_1 + 22/38 g_2 = (-10, 30, 30) / 19;  pi(g_2) = g_2 + 22/18 g_1 = (10, 20, 20) / 9
    d, coef = UPGrad().combine(g)
    torch.testing.assert_close(d, t([50.0, 325.0, 325.0]) / 171)  # (0.2924, 1.9006, 1.9006), as TorchJD prints
    torch.testing.assert_close(coef @ g, d)
    torch.testing.assert_close(UPGrad(reduction="sum").combine(g)[0], 2 * d)
    # DualProj: the mean (1, 1, 1) conflicts with g_1 (-2): (1, 1, 1) + 2/18 g_1 = (5, 10, 10) / 9
    d, coef = DualProj().combine(g)
    torch.testing.assert_close(d, t([5.0, 10.0, 10.0]) / 9)
    torch.testing.assert_close(coef, t([11.0 / 18, 0.5]))
    torch.testing.assert_close(DualProj(reduction="sum").combine(g)[0], 2 * d)
    # Two tasks: each projection is PCGrad's; without conflict both are the mean gradient.
    g = t([[1.0, 0.0], [-1.0, 1.0]])
    torch.testing.assert_close(UPGrad().combine(g)[0], PCGrad(reduction="mean").combine(g)[0])
    g = t([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    torch.testing.assert_close(UPGrad().combine(g)[0], g.mean(0))
    torch.testing.assert_close(DualProj().combine(g)[0], g.mean(0))


@pytest.mark.parametrize("n_tasks", [2, 3, 4])
def test_upgrad_and_dualproj_are_the_projections_onto_the_dual_cone(n_tasks):
    gen = torch.Generator().manual_seed(n_tasks)
    for _ in range(4):
        g = torch.randn(n_tasks, 5, dtype=torch.float64, generator=gen)
        g[1] = -0.7 * g[0] + 0.3 * g[1]  # a conflict
        scale = float(g.norm(dim=1).max() ** 2)
        d, coef = UPGrad().combine(g)
        assert bool((g @ d >= -1e-10 * scale).all())  # in the dual cone: no task's loss increases
        assert bool((coef >= 1 / n_tasks - 1e-12).all())  # v_i >= e_i
        reference = torch.stack([_project_onto_dual_cone(g, g[i]) for i in range(n_tasks)]).mean(0)
        torch.testing.assert_close(d, reference, atol=1e-6, rtol=1e-6)
        d, coef = DualProj().combine(g)
        assert bool((g @ d >= -1e-10 * scale).all())
        torch.testing.assert_close(d, _project_onto_dual_cone(g, g.mean(0)), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Aligned-MTL
# ---------------------------------------------------------------------------------------
def test_aligned_mtl_matches_torchjd_example():
    g = t([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    torch.testing.assert_close(
        AlignedMTL(reduction="mean").combine(g)[0], t([0.2133, 0.9673, 0.9673]), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(AlignedMTL().combine(g)[0], 2 * AlignedMTL(reduction="mean").combine(g)[0])


@pytest.mark.parametrize("n_tasks", [2, 3, 4])
def test_aligned_mtl_balances_the_gradients_to_condition_number_one(n_tasks):
    from sklearn_mtr.optim.aligned_mtl import balance_transformation

    gen = torch.Generator().manual_seed(n_tasks)
    g = torch.randn(n_tasks, 6, dtype=torch.float64, generator=gen) * t([1.0, 5.0, 0.2, 2.0][:n_tasks])[:, None]
    G = (g @ g.T).numpy()
    B, rank, condition = balance_transformation(G, float(torch.finfo(torch.float64).eps))
    sigma = torch.linalg.svdvals(g)
    assert rank == n_tasks and condition == pytest.approx(float(sigma.max() / sigma.min()))
    # The aligned gradients J^T B are orthogonal with norm sigma_min: B G B = sigma_min^2 I.
    np.testing.assert_allclose(B @ G @ B, float(sigma.min()) ** 2 * np.eye(n_tasks), atol=1e-10)
    # d = J^T B 1 = sigma_min W U^T 1 from the SVD J = U S W^T of the full matrix.
    U, S, Wt = torch.linalg.svd(g, full_matrices=False)
    d, alpha = AlignedMTL().combine(g)
    torch.testing.assert_close(d, S.min() * Wt.T @ U.T @ torch.ones(n_tasks, dtype=torch.float64))
    torch.testing.assert_close(alpha @ g, d)
    # The other scales: the aligned gradients' common norm is the median / RMS singular value.
    for mode, scale in (("median", (sigma**2).median().sqrt()), ("rmse", (sigma**2).mean().sqrt())):
        B, _, _ = balance_transformation(G, 1e-16, mode)
        np.testing.assert_allclose(B @ G @ B, float(scale) ** 2 * np.eye(n_tasks), atol=1e-9)
    # Rank-deficient: two identical gradients count once.
    h = torch.cat([g[:1], g[:1]])
    assert balance_transformation((h @ h.T).numpy(), 1e-16)[1] == 1


# ---------------------------------------------------------------------------------------
# DB-MTL
# ---------------------------------------------------------------------------------------
def test_db_mtl_log_gradients_ema_and_max_norm_rescaling():
    g = t([[3.0, 4.0], [0.0, 1.0]])
    losses = t([2.0, 0.5])
    method = DBMTL(beta=0.5, eps=1e-8)
    state = method.create_state(None, 2)
    # step 1: grad log L = g / L = ((1.5, 2), (0, 2)); ghat = 0.5 * 0 + 0.5 * that = ((0.75, 1), (0, 1))
    # norms (1.25, 1): alpha = (1, 1.25); d = (0.75, 1) + 1.25 (0, 1)
    d, alpha = method.combine(g, losses, state)
    torch.testing.assert_close(alpha, t([1.0, 1.25]))
    torch.testing.assert_close(d, t([0.75, 2.25]))
    # step 2: ghat = 0.5 ghat + 0.5 g / L = ((1.125, 1.5), (0, 1.5))
    d, alpha = method.combine(g, losses, state)
    torch.testing.assert_close(state.grad_buffer, t([[1.125, 1.5], [0.0, 1.5]]))
    torch.testing.assert_close(d, t([1.125, 1.5 + 1.25 * 1.5]))
    # beta_k = beta / k^sigma: at step 2 with sigma = 1, 0.25 ghat + 0.75 g / L
    method = DBMTL(beta=0.5, beta_sigma=1.0)
    state = method.create_state(None, 2)
    method.combine(g, losses, state)
    method.combine(g, losses, state)
    torch.testing.assert_close(
        state.grad_buffer, 0.25 * t([[0.75, 1.0], [0.0, 1.0]]) + 0.75 * t([[1.5, 2.0], [0.0, 2.0]])
    )
    # A task without labels (loss 0) keeps its average.
    before = state.grad_buffer.clone()
    method.combine(t([[1.0, 1.0], [0.0, 0.0]]), t([1.0, 0.0]), state)
    torch.testing.assert_close(state.grad_buffer[1], before[1])
    # Rescaled averages all have the largest norm; the losses' scale does not matter.
    rng = np.random.default_rng(0)
    method = DBMTL()
    state = method.create_state(None, 3)
    for _ in range(5):
        g = torch.from_numpy(rng.normal(size=(3, 4)))
        _, alpha = method.combine(g, torch.from_numpy(rng.uniform(0.1, 5.0, 3)), state)
        norms = alpha * state.grad_buffer.norm(dim=1)
        torch.testing.assert_close(norms, norms.max().expand(3))


def test_db_mtl_backward_writes_the_balanced_gradient_and_private_log_gradients():
    torch.manual_seed(0)
    model = _Toy(2)
    batch, y = _toy_data()
    u = torch.tensor([1.0, 3.0])
    method = DBMTL(beta=0.9)
    state = method.create_state(model, 2)
    assert state.grad_buffer.shape == (2, sum(p.numel() for p in model.shared_parameters()))
    losses = _losses(model, batch, y)
    shared = model.shared_parameters()
    raw = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[k], shared, retain_graph=True)])
            for k in range(2)
        ]
    )
    tower = [torch.autograd.grad(losses[k], list(model.towers[k].parameters()), retain_graph=True) for k in range(2)]
    diag = method.backward(losses, StepContext(model, None, state, u))
    ghat = 0.1 * raw / (losses.detach() + 1e-8)[:, None]  # first step: (1 - beta) grad log L
    norms = ghat.norm(dim=1)
    torch.testing.assert_close(diag["weights"], norms.max() / norms)
    expected = (u * norms.max() / norms) @ ghat
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected)
    for k in range(2):
        for p, g in zip(model.towers[k].parameters(), tower[k]):
            torch.testing.assert_close(p.grad, u[k] * g / (losses[k].detach() + 1e-8))


# ---------------------------------------------------------------------------------------
# MetaBalance
# ---------------------------------------------------------------------------------------
def test_metabalance_adaptive_brings_the_auxiliary_norm_to_r_target_plus_one_minus_r_own():
    g = t([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])  # norms 5 (target), 1, 10
    method = MetaBalance(relax_factor=0.7, beta=0.0)
    d, ratios = method.combine(g)
    # ||g_k'|| = r ||g_tar|| + (1 - r) ||g_k||: 0.7 * 5 + 0.3 * 1 = 3.8 and 0.7 * 5 + 0.3 * 10 = 6.5
    torch.testing.assert_close(ratios, t([1.0, 3.8, 0.65]))
    torch.testing.assert_close(d, g[0] + 3.8 * g[1] + 0.65 * g[2])
    # r = 1: every auxiliary gradient gets the target's norm; r = 0: nothing changes.
    torch.testing.assert_close(MetaBalance(relax_factor=1.0, beta=0.0).combine(g)[1], t([1.0, 5.0, 0.5]))
    torch.testing.assert_close(MetaBalance(relax_factor=0.0, beta=0.0).combine(g)[0], g.sum(0))
    # The target is a parameter.
    torch.testing.assert_close(
        MetaBalance(relax_factor=1.0, beta=0.0, target_task=2).combine(g)[1], t([2.0, 10.0, 1.0])
    )
    # "reduce" only shrinks larger auxiliary gradients, "enlarge" only grows smaller ones.
    torch.testing.assert_close(MetaBalance(beta=0.0, strategy="reduce").combine(g)[1], t([1.0, 1.0, 0.65]))
    torch.testing.assert_close(MetaBalance(beta=0.0, strategy="enlarge").combine(g)[1], t([1.0, 3.8, 1.0]))


def test_metabalance_moving_average_norms_and_per_tensor_rescaling():
    method = MetaBalance(relax_factor=1.0, beta=0.5)
    state = method.create_state(None, 2)
    g1 = t([[2.0, 0.0], [0.0, 1.0]])
    g2 = t([[4.0, 0.0], [0.0, 1.0]])
    method.combine(g1, state=state)
    torch.testing.assert_close(state.norms, t([[1.0], [0.5]]).to(state.norms.dtype))  # (1 - beta) ||g||
    _, ratios = method.combine(g2, state=state)
    # m_tar = 0.5 * 1 + 0.5 * 4 = 2.5, m_aux = 0.5 * 0.5 + 0.5 * 1 = 0.75: scale 2.5 / 0.75
    torch.testing.assert_close(state.norms, t([[2.5], [0.75]]).to(state.norms.dtype))
    torch.testing.assert_close(ratios, t([1.0, 2.5 / 0.75]))
    # Per tensor: columns (0, 1) and (2,) are two shared tensors, each balanced on its own.
    g = t([[3.0, 4.0, 1.0], [0.0, 1.0, 2.0]])
    balanced = MetaBalance(relax_factor=1.0, beta=0.0).balance(g, MetaBalance().create_state(None, 2), [2, 1])
    torch.testing.assert_close(balanced, t([[3.0, 4.0, 1.0], [0.0, 5.0, 1.0]]))


def test_metabalance_backward_balances_each_shared_tensor_and_weights_after():
    torch.manual_seed(0)
    model = _Toy(2)
    batch, y = _toy_data()
    u = torch.tensor([2.0, 3.0])
    method = MetaBalance(relax_factor=0.7, beta=0.0)
    state = method.create_state(model, 2)
    assert state.norms.shape == (2, 2)  # the shared layer's weight and bias
    losses = _losses(model, batch, y)
    shared = model.shared_parameters()
    per_task = [torch.autograd.grad(losses[k], shared, retain_graph=True) for k in range(2)]
    method.backward(losses, StepContext(model, None, state, u))
    for i, p in enumerate(shared):
        target, aux = per_task[0][i], per_task[1][i]
        aux_balanced = aux * (0.7 * target.norm() / aux.norm() + 0.3)
        torch.testing.assert_close(aux_balanced.norm(), 0.7 * target.norm() + 0.3 * aux.norm())
        torch.testing.assert_close(p.grad, u[0] * target + u[1] * aux_balanced)


# ---------------------------------------------------------------------------------------
# FairGrad
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 10.0])
@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_fairgrad_weights_solve_the_alpha_fair_system(alpha, n_tasks):
    from scipy.optimize import least_squares

    rng = np.random.default_rng(n_tasks)
    g = torch.from_numpy(rng.normal(size=(n_tasks, 7)) * rng.uniform(0.1, 10.0, size=(n_tasks, 1)))
    d, w = FairGrad(alpha=alpha).combine(g)
    gram = g @ g.T
    assert bool((w > 0).all())
    # G^T G w = w^(-1/alpha), element-wise
    torch.testing.assert_close(gram @ w, w ** (-1.0 / alpha), rtol=1e-8, atol=0)
    torch.testing.assert_close(d, w @ g)
    # An independent solver (the authors' choice: least squares on the residual from 1 / T) agrees.
    A = gram.numpy()
    ref = least_squares(lambda x: A @ x - x ** (-1.0 / alpha), np.full(n_tasks, 1.0 / n_tasks), bounds=(1e-12, np.inf))
    if np.abs(ref.fun).max() < 1e-8 * np.abs(ref.x ** (-1.0 / alpha)).max():
        np.testing.assert_allclose(w.numpy(), ref.x, rtol=1e-4)


def test_fairgrad_special_cases():
    g = t([[3.0, 4.0], [0.0, 2.0]])
    # alpha = 1 is the Nash bargaining solution: alpha_i = 1 / (||g_i|| sqrt(1 + cos)).
    _, w = FairGrad(alpha=1.0).combine(g)
    cos = 8.0 / (5.0 * 2.0)
    torch.testing.assert_close(w, 1.0 / (t([5.0, 2.0]) * math.sqrt(1.0 + cos)))
    # Orthogonal gradients: w_i = ||g_i||^(-2 alpha / (alpha + 1)).
    _, w = FairGrad(alpha=3.0).combine(t([[2.0, 0.0], [0.0, 0.5]]))
    torch.testing.assert_close(w, t([2.0, 0.5]) ** (-2 * 3.0 / 4.0))
    # Large alpha: nearly equal decreases g_i . d (max-min fairness), here where G^-1 1 > 0.
    h = t([[2.0, 0.0], [0.5, 1.0]])
    d, _ = FairGrad(alpha=100.0).combine(h)
    decreases = h @ d
    assert float(decreases.max() / decreases.min()) < 1.05
    assert float((g @ FairGrad(alpha=0.5).combine(g)[0]).max() / (g @ FairGrad(alpha=0.5).combine(g)[0]).min()) > 1.05
    # No positive solution (opposite gradients): the last solved weights are kept.
    method = FairGrad()
    state = method.create_state(None, 2)
    _, w = method.combine(g, state=state)
    _, again = method.combine(t([[1.0, 0.0], [-1.0, 0.0]]), state=state)
    torch.testing.assert_close(again, w)


# ---------------------------------------------------------------------------------------
# ExcessMTL
# ---------------------------------------------------------------------------------------
def test_excess_mtl_exponentiated_update_of_the_adagrad_excess_risks():
    eta = 0.5
    method = ExcessMTL(robust_step_size=eta)
    state = method.create_state(None, 2)
    steps = [t([[1.0, 2.0], [3.0, 0.0]]), t([[2.0, 0.0], [0.0, 1.0]]), t([[1.0, 1.0], [2.0, 2.0]])]
    sums = torch.zeros(2, 2, dtype=torch.float64)
    w = torch.ones(2, dtype=torch.float64)
    first = None
    for k, g in enumerate(steps):
        d, weights = method.combine(g, state=state)
        sums = sums + g * g  # Adagrad: G_i <- G_i + g_i^2
        risk = torch.stack([g[i] @ (g[i] / torch.sqrt(sums[i] + 1e-7)) for i in range(2)])  # g^T diag(1/h) g
        if k == 0:
            first = risk  # e_i^0; the weights stay at one
        else:
            w = w * torch.exp(eta * risk / first)
            w = 2 * w / w.sum()
        torch.testing.assert_close(weights, w)
        torch.testing.assert_close(d, w @ g)
        torch.testing.assert_close(state.grad_sq_sum.double(), sums)
    assert weights.sum().item() == pytest.approx(2.0)
    # A task whose excess risk stays higher (relative to its start) gains weight.
    method = ExcessMTL(robust_step_size=0.1)
    state = method.create_state(None, 2)
    method.combine(t([[1.0, 0.0], [1.0, 0.0]]), state=state)
    for _ in range(20):
        _, weights = method.combine(t([[0.1, 0.0], [1.0, 0.0]]), state=state)
    assert weights[1] > weights[0]


def test_excess_mtl_backward_writes_the_weighted_gradients():
    torch.manual_seed(0)
    model = _Toy(2)
    batch, y = _toy_data()
    u = torch.tensor([1.0, 3.0])
    method = ExcessMTL()
    state = method.create_state(model, 2)
    assert state.grad_sq_sum.shape == (2, sum(p.numel() for p in model.shared_parameters()))
    for step in range(2):  # the second step (other targets) moves the weights off one
        model.zero_grad(set_to_none=True)
        before = state.loss_weights.clone()
        losses = _losses(model, batch, y if step == 0 else y * t([[0.2, 3.0]]).float())
        shared = model.shared_parameters()
        raw = torch.stack(
            [
                torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[k], shared, retain_graph=True)])
                for k in range(2)
            ]
        )
        diag = method.backward(losses, StepContext(model, None, state, u))
    assert not torch.allclose(diag["weights"], before)
    expected = (u * diag["weights"]) @ raw
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected)


# ---------------------------------------------------------------------------------------
# MoCo
# ---------------------------------------------------------------------------------------
def test_moco_tracks_the_gradients_and_takes_projected_steps_on_the_weights():
    rng = np.random.default_rng(0)
    for n in (2, 3, 6):
        for _ in range(20):
            v = torch.from_numpy(rng.normal(scale=2.0, size=n))
            torch.testing.assert_close(project_onto_simplex(v), torch.from_numpy(project_simplex(v.numpy())))
    beta, gamma, rho = 0.5, 0.1, 0.2
    method = MoCo(beta=beta, beta_sigma=0.5, gamma=gamma, gamma_sigma=0.5, rho=rho, normalization="none")
    state = method.create_state(None, 2)
    steps = [t([[3.0, 4.0], [0.0, 1.0]]), t([[1.0, 0.0], [-1.0, 2.0]]), t([[2.0, 2.0], [0.0, -1.0]])]
    y = torch.zeros(2, 2, dtype=torch.float64)
    lam = t([0.5, 0.5])
    for k, g in enumerate(steps, start=1):
        d, weights = method.combine(g, state=state)
        y = y - beta / k**0.5 * (y - g)  # y_i <- y_i - beta_t (y_i - h_i)
        v = lam - gamma / k**0.5 * ((y @ y.T + rho * torch.eye(2, dtype=torch.float64)) @ lam)
        lam = torch.from_numpy(project_simplex(v.numpy()))  # lambda <- Proj(lambda - gamma_t (Y^T Y + rho I) lambda)
        torch.testing.assert_close(state.tracked.double(), y)
        torch.testing.assert_close(weights, lam)
        torch.testing.assert_close(d, lam @ y)  # d = Y lambda
    # normalization="loss": h_i = L_i g_i / ||g_i|| (the authors' code).
    method = MoCo(beta=1.0, normalization="loss")
    g = t([[3.0, 4.0], [0.0, 2.0]])
    method.combine(g, t([2.0, 0.5]), state := method.create_state(None, 2))
    torch.testing.assert_close(state.tracked.double(), t([[1.2, 1.6], [0.0, 0.5]]), atol=1e-7, rtol=0)
    # With strongly unbalanced gradients the weights move to the smaller one (MGDA's min-norm point).
    method = MoCo(normalization="none")
    state = method.create_state(None, 2)
    for _ in range(200):
        _, weights = method.combine(t([[10.0, 0.0], [0.0, 1.0]]), state=state)
    torch.testing.assert_close(weights, t([1 / 101, 100 / 101]), atol=2e-3, rtol=0)


# ---------------------------------------------------------------------------------------
# SDMGrad
# ---------------------------------------------------------------------------------------
def test_sdmgrad_projected_momentum_steps_and_the_regularised_direction():
    g = t([[3.0, 0.0, 1.0], [-1.0, 2.0, 0.0], [0.5, 0.5, 2.0]])
    lam = 0.3
    method = SDMGrad(lamda=lam, niter=2)
    state = method.create_state(None, 3)
    d, coef = method.combine(g, state=state)
    # By hand: GG normalised by the squared mean norm, two momentum-SGD steps (lr 5, momentum 0.5)
    # each projected onto the simplex, from w = 1/3.
    GG = g @ g.T
    GG = GG / (GG.diagonal().sqrt().mean() ** 2 + 1e-8)
    Gg = GG.mean(1)
    w = np.full(3, 1 / 3)
    grad = GG.numpy() @ w + lam * Gg.numpy()
    buffer = grad
    w = project_simplex(w - 5.0 * buffer)
    grad = GG.numpy() @ w + lam * Gg.numpy()
    buffer = 0.5 * buffer + grad
    w = project_simplex(w - 5.0 * buffer)
    torch.testing.assert_close(state.w.double(), torch.from_numpy(w), atol=1e-6, rtol=0)
    expected = (torch.from_numpy(w) + lam / 3) / (1 + lam)  # d = (G w + lamda g0) / (1 + lamda)
    torch.testing.assert_close(coef, expected)
    torch.testing.assert_close(d, (torch.from_numpy(w) @ g + lam * g.mean(0)) / (1 + lam))
    # Many steps with a converging step size reach argmin_w ||G w + lamda g0||^2 (an exact
    # simplex QP solver); the next training step continues from the stored w.
    method = SDMGrad(lamda=lam, niter=300, inner_lr=0.5)
    state = method.create_state(None, 3)
    method.combine(g, state=state)
    method.combine(g, state=state)
    reference = simplex_qp(GG.numpy(), lam * Gg.numpy())
    np.testing.assert_allclose(state.w.numpy(), reference, atol=1e-6)
    # lamda = 0 is MGDA's min-norm point.
    method = SDMGrad(lamda=0.0, niter=600, inner_lr=0.5)
    _, coef = method.combine(g)
    np.testing.assert_allclose(coef.numpy(), min_norm_weights((g @ g.T).numpy()), atol=1e-6)


# ---------------------------------------------------------------------------------------
# MoDo
# ---------------------------------------------------------------------------------------
def test_modo_projected_step_on_the_weights_then_the_weighted_gradient():
    gamma, rho = 0.05, 0.1
    method = MoDo(gamma=gamma, rho=rho)
    state = method.create_state(None, 3)
    lam = np.full(3, 1 / 3)
    for g in (t([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), t([[2.0, -1.0], [0.5, 1.0], [0.0, 3.0]])):
        d, weights = method.combine(g, state=state)
        G = (g @ g.T).numpy()
        lam = project_simplex(
            lam - gamma * (G @ lam + rho * lam)
        )  # lambda <- Proj(lambda - gamma (G^T G + rho I) lambda)
        torch.testing.assert_close(weights, torch.from_numpy(lam))
        torch.testing.assert_close(d, torch.from_numpy(lam) @ g)  # d = G lambda (the updated lambda)
        torch.testing.assert_close(state.lambd.double(), torch.from_numpy(lam), atol=1e-7, rtol=0)
    # Repeated steps converge to the regularised min-norm weights.
    method = MoDo(gamma=0.02, rho=0.0)
    state = method.create_state(None, 2)
    for _ in range(3000):
        _, weights = method.combine(t([[4.0, 0.0], [0.0, 1.0]]), state=state)
    torch.testing.assert_close(weights, t([1 / 17, 16 / 17]), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------
# common behaviour on a torch model
# ---------------------------------------------------------------------------------------
class _Toy(MultiTaskModule):
    """Shared linear layer, one linear tower per task."""

    def __init__(self, n_tasks=2):
        super().__init__()
        self.n_tasks = n_tasks
        self.shared = nn.Linear(4, 8)
        self.towers = nn.ModuleList(nn.Linear(8, 1) for _ in range(n_tasks))

    def forward(self, batch):
        h = torch.tanh(self.shared(batch["x"]))
        return torch.cat([tower(h) for tower in self.towers], 1)


def _toy_data(n_tasks=2):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    w = torch.randn(4, n_tasks, generator=gen)
    w[:, 1] = -0.6 * w[:, 0] + 0.4 * w[:, 1]  # partly conflicting targets
    return {"x": x}, x @ w


def _losses(model, batch, y):
    return ((model(batch) - y) ** 2).mean(0)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_training_lowers_both_losses_on_a_toy_problem(method):
    torch.manual_seed(0)
    method = clone(method)
    model = _Toy()
    batch, y = _toy_data()
    state = method.create_state(model, 2)
    opt = method.create_optimizer(model, state, lr=0.02, weight_decay=0.0)
    weights = torch.ones(2)
    start = _losses(model, batch, y).detach()
    for _ in range(40):
        opt.zero_grad(set_to_none=True)
        ctx = StepContext(model, opt, state, weights)
        diagnostics = method.backward(_losses(model, batch, y), ctx)
        method.step(ctx)
    end = _losses(model, batch, y).detach()
    assert bool((end < 0.7 * start).all()), (start, end)
    assert diagnostics["weights"].shape == (2,) and diagnostics["cosine"].shape == ()
    assert -1 <= float(diagnostics["cosine"]) <= 1


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_private_parameters_get_their_own_task_gradient(method):
    torch.manual_seed(0)
    model = _Toy(3)
    batch, _ = _toy_data()
    y = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    task_weights = torch.tensor([1.0, 3.0, 0.5])
    state = method.create_state(model, 3)
    losses = _losses(model, batch, y)
    raw = [torch.autograd.grad(losses[k], list(model.towers[k].parameters()), retain_graph=True) for k in range(3)]
    diagnostics = method.backward(losses, StepContext(model, None, state, task_weights))
    if isinstance(method, DBMTL):  # the gradient of u_k log(L_k + eps)
        scales = task_weights / (losses.detach() + method.eps)
    else:
        scales = diagnostics["weights"] * task_weights if method._weights_scale_private else task_weights
    for k in range(3):
        for p, g in zip(model.towers[k].parameters(), raw[k]):
            torch.testing.assert_close(p.grad, g * scales[k])


@pytest.mark.parametrize(
    "method",
    [MGDA(), CAGrad(), IMTLG(), NashMTL(), GradDrop(), ConFIG(), UPGrad(), DualProj(), AlignedMTL(), FairGrad()],
    ids=["MGDA", "CAGrad", "IMTLG", "NashMTL", "GradDrop", "ConFIG", "UPGrad", "DualProj", "AlignedMTL", "FairGrad"],
)
def test_a_task_without_gradient_does_not_stall_the_others(method):
    g = t([[0.0, 0.0], [1.0, 2.0], [2.0, 0.5]])  # task 0 has no label in the batch
    d, _coef = method.combine(g)
    assert bool(torch.isfinite(d).all()) and float(d.norm()) > 0
    assert bool((g[1:] @ d > 0).all())  # still a descent direction for the other tasks


def test_nash_mtl_reuses_weights_between_refreshes_and_clips_the_shared_gradient():
    torch.manual_seed(0)
    model = _Toy()
    batch, y = _toy_data()
    method = NashMTL(update_weights_every=3, max_norm=0.5)
    state = method.create_state(model, 2)
    opt = method.create_optimizer(model, state, lr=0.01, weight_decay=0.0)
    seen = []
    for step in range(6):
        opt.zero_grad(set_to_none=True)
        ctx = StepContext(model, opt, state, torch.ones(2))
        seen.append(method.backward(_losses(model, batch, y), ctx)["weights"])
        norm = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()]).norm()
        assert float(norm) <= 0.5 + 1e-5
        method.step(ctx)
    torch.testing.assert_close(seen[1], seen[0])
    torch.testing.assert_close(seen[2], seen[0])
    assert not torch.equal(seen[3], seen[0])
    torch.testing.assert_close(seen[5], seen[3])


# ---------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------
TINY = {"embedding_dim": 4, "tower_hidden_sizes": (4,), "max_epochs": 2, "random_state": 0}
ARCH = {
    MMoEClassifier: {"n_experts": 2, "expert_hidden_sizes": (8,)},
    PLEClassifier: {"expert_hidden_sizes": (8,)},
    SharedBottomClassifier: {"bottom_hidden_sizes": (8,)},
}


@pytest.fixture(scope="module")
def data():
    return make_multitask_classification(n_samples=300, n_features=6, n_categorical=2, random_state=0)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@pytest.mark.parametrize("cls", list(ARCH), ids=lambda c: c.__name__)
def test_fits_and_predicts_with_every_architecture(cls, method, data):
    X, Y = data
    clf = cls(**ARCH[cls], **TINY, optimizer=method, batch_size=64).fit(X, Y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.isfinite(proba).all()
    last = clf.history_[-1]
    assert len(last["optim_weights"]) == 2 and all(math.isfinite(w) for w in last["optim_weights"])
    assert -1 <= last["optim_cosine"] <= 1


@pytest.mark.parametrize(
    "method", [PCGrad(), MGDA(normalization="loss+"), CAGrad(), NashMTL(update_weights_every=2), GradDrop(), GradVac()]
)
def test_three_tasks_with_task_weights_are_reproducible(method):
    X, Y = make_multitask_classification(n_samples=300, n_features=6, n_tasks=3, random_state=1)
    kwargs = dict(**ARCH[MMoEClassifier], **TINY, optimizer=method, batch_size=64, task_weights=[1.0, 2.0, 0.5])
    p1 = MMoEClassifier(**kwargs).fit(X, Y).predict_proba(X)
    p2 = MMoEClassifier(**kwargs).fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize(
    "method",
    [MetaBalance(), FairGrad(), ExcessMTL(), MoCo(), SDMGrad(), MoDo(), PCGrad(), GradDrop(), GradVac()],
    ids=["MetaBalance", "FairGrad", "ExcessMTL", "MoCo", "SDMGrad", "MoDo", "PCGrad", "GradDrop", "GradVac"],
)
def test_state_survives_the_safe_format_and_training_continues_identically(method, data, tmp_path):
    from sklearn_mtr.persistence import load, save

    X, Y = data
    clf = MMoEClassifier(**ARCH[MMoEClassifier], **TINY, optimizer=method, batch_size=64).fit(X, Y)
    save(clf, tmp_path / "model.mtr")
    loaded = load(tmp_path / "model.mtr")
    saved, restored = clf.net_.mto_state_.state_dict(), loaded.net_.mto_state_.state_dict()
    assert saved.keys() == restored.keys() and saved
    for key in saved:
        torch.testing.assert_close(restored[key], saved[key], rtol=0, atol=0, msg=key)
    clf.partial_fit(X, Y)
    loaded.partial_fit(X, Y)
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_clone_and_get_params(method):
    params = method.get_params()
    twin = clone(method)
    assert twin is not method and twin.get_params() == params
    assert repr(twin) == repr(method)
    clf = clone(MMoEClassifier(optimizer=method))
    assert clf.get_params()["optimizer"].get_params() == params
    for name, value in params.items():
        assert clf.get_params()[f"optimizer__{name}"] == value


@pytest.mark.parametrize(
    "method, message",
    [
        (MGDA(normalization="l1"), "normalization"),
        (PCGrad(reduction="max"), "reduction"),
        (CAGrad(c=-1.0), "c must be"),
        (CAGrad(rescale="yes"), "rescale"),
        (NashMTL(update_weights_every=0), "update_weights_every"),
        (NashMTL(max_norm=-1.0), "max_norm"),
        (GradDrop(leak=1.5), "leak"),
        (GradDrop(leak="none"), "leak"),
        (GradVac(beta=0.0), "beta"),
        (GradVac(beta=1.5), "beta"),
        (UPGrad(reduction="max"), "reduction"),
        (DualProj(reduction=None), "reduction"),
        (AlignedMTL(scale_mode="max"), "scale_mode"),
        (AlignedMTL(reduction="max"), "reduction"),
        (DBMTL(beta=1.0), "beta"),
        (DBMTL(beta_sigma=-0.5), "beta_sigma"),
        (DBMTL(eps=0.0), "eps"),
        (MetaBalance(relax_factor=1.5), "relax_factor"),
        (MetaBalance(beta=1.0), "beta"),
        (MetaBalance(target_task=2), "target_task"),
        (MetaBalance(target_task=-1), "target_task"),
        (MetaBalance(strategy="shrink"), "strategy"),
        (FairGrad(alpha=0.0), "alpha"),
        (FairGrad(alpha=float("inf")), "alpha"),
        (ExcessMTL(robust_step_size=0.0), "robust_step_size"),
        (ExcessMTL(robust_step_size="big"), "robust_step_size"),
        (MoCo(beta=0.0), "beta"),
        (MoCo(gamma=-0.1), "gamma"),
        (MoCo(rho=-1.0), "rho"),
        (MoCo(normalization="l2"), "normalization"),
        (SDMGrad(lamda=-0.1), "lamda"),
        (SDMGrad(niter=0), "niter"),
        (SDMGrad(inner_lr=0.0), "inner_lr"),
        (MoDo(gamma=0.0), "gamma"),
        (MoDo(rho=-0.5), "rho"),
    ],
)
def test_bad_hyperparameters_raise_on_first_use(method, message, data):
    X, Y = data
    with pytest.raises(ValueError, match=message):
        MMoEClassifier(**ARCH[MMoEClassifier], **TINY, optimizer=method).fit(X, Y)
