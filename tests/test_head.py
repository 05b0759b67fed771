"""The head learner (learners/head.py): its compiled fixed-point path against the PyTorch twin,
gradcheck, order-free sums, the streaming add/drop updates against fresh sums bit for bit,
degenerate supports, and adaptation that pays on tasks that differ only in their scale."""
import numpy as np
import pytest
import torch

from metarisk_fast.learners import HeadNewton

D = 6


def _learner(hidden=(12,), seed=0, scale=0.3):
    torch.manual_seed(seed)
    m = HeadNewton(D, hidden, width=5)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn_like(p))
    return m


def _tasks(B, K, Q, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(B, K, D)).astype(np.float32)
    ys = np.clip(np.abs(rng.standard_t(5, size=(B, K, 1))), 0.05, 20).astype(np.float32)
    xq = rng.normal(size=(B, Q, D)).astype(np.float32)
    return xs, ys, xq


@pytest.mark.parametrize("loss", ["student_t_nll", "gaussian_nll"])
@pytest.mark.parametrize("K", [0, 1, 7, 60])
def test_compiled_path_matches_the_pytorch_twin(loss, K):
    """The fixed-point statistics (2^-32 grid) move the outputs by about 1e-8 at most."""
    m = _learner()
    m.loss = loss
    xs, ys, xq = _tasks(20, K, 3)
    got = m.adapt_predict(xs, ys, xq)
    with torch.no_grad():
        want = m.double().forward_adapt_predict(*(torch.from_numpy(a).double() for a in (xs, ys, xq))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7)
    if K == 0:  # zero-shot: the meta-learned head itself
        np.testing.assert_array_equal(got, m.adapt_predict(xs[:, :0], ys[:, :0], xq))


def test_sums_are_order_free_bit_for_bit():
    m = _learner()
    xs, ys, xq = _tasks(10, 40, 2)
    perm = np.random.default_rng(1).permutation(40)
    np.testing.assert_array_equal(m.adapt_predict(xs, ys, xq), m.adapt_predict(xs[:, perm], ys[:, perm], xq))


def test_the_engine_updates_equal_fresh_sums_bit_for_bit():
    """One asset's bars (stream_bar, a delay line of two rows): bar n's row gets its features, the
    row of bar n - 1 joins a store of H rows (the oldest leaving once it is full), and bar n's
    output equals a fresh task of the stored rows, bit for bit."""
    m, H = _learner(), 10
    params = m.kernel_params()
    state = m.stream_state(1, H)
    row_phi = np.zeros((2, 1, 6))
    xs, ys, _ = _tasks(1, 100, 1)
    one, pushed, pushed_target = np.array([0]), np.zeros((1, 2), np.int64), np.zeros(1, np.float32)
    for n in range(1, 101):
        stored = n - 1  # rows in the store after this bar's push
        pushed[0, 1] = (n - 2) % H
        pushed_target[0] = ys[0, n - 2, 0]
        got = m.stream_bar(params, xs[0, n - 1:n], one, n % 2, pushed, pushed_target, int(n > 1), (n - 1) % 2,
                           np.array([stored]), H, np.array([True]), row_phi, state)
        lo = max(0, stored - H)
        want = m.adapt_predict(xs[:, lo:stored], ys[:, lo:stored], xs[:, n - 1:n])[0, 0, 0]
        assert got[0] == want, (n, got[0], want)


def test_store_updates_and_solves_split_by_blocks_equal_one_pass():
    """The engine's store updates and solves (stream_stores) over the assets in three ranges of
    whole blocks of the statistics (the last one partial) equal one pass over all of them, bit for
    bit, over bars that fill the stores and then drop their oldest rows; a range that starts
    mid-block is refused."""
    from metarisk_fast.learners import _head_kernels as K
    m, n, H = _learner(), 150, 8
    theta, sizes, w0, precision, code = m.kernel_params()
    d, rng = len(w0), np.random.default_rng(3)
    one, split = m.stream_state(n, H), m.stream_state(n, H)
    count, pos = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for _ in range(3 * H):
        arriving = np.empty((n, d))
        K.body_rows(rng.normal(size=(n, D)).astype(np.float32), np.arange(n), theta, sizes, arriving)
        sel = np.flatnonzero(rng.random(n) < 0.8)  # some assets get no row this bar
        count[sel] += 1
        pushed = np.stack([sel, pos[sel]], axis=1)
        pos[sel] = (pos[sel] + 1) % H
        target = rng.uniform(0.2, 3.0, len(sel)).astype(np.float32)
        w_one, w_split = np.empty((n, d)), np.empty((n, d))
        K.stream_stores(pushed, target, len(sel), arriving, count, H, w0, precision, code, one["head_phi"],
                        one["head_slopes"], one["head_stats"], w_one, 0, n)
        for lo, hi in ((0, 64), (64, 128), (128, n)):
            part = (sel >= lo) & (sel < hi)
            K.stream_stores(np.ascontiguousarray(pushed[part]), target[part], int(part.sum()), arriving, count, H, w0,
                            precision, code, split["head_phi"], split["head_slopes"], split["head_stats"], w_split,
                            lo, hi)
        np.testing.assert_array_equal(w_split, w_one)
        np.testing.assert_array_equal(split["head_stats"], one["head_stats"])
    assert np.isfinite(w_one).all() and one["head_stats"].any()
    with pytest.raises(ValueError, match="multiple of HEAD_BLOCK"):
        K.stream_stores(pushed[:0], target[:0], 0, arriving, count, H, w0, precision, code, one["head_phi"],
                        one["head_slopes"], one["head_stats"], w_one, 37, n)


def test_gradcheck():
    m = _learner().double()
    xs, ys, xq = (torch.from_numpy(a).double() for a in _tasks(3, 8, 2))
    yq = torch.rand(3, 2, 1, dtype=torch.float64) + 0.1
    xs.requires_grad_(True)
    # the parameters themselves are inputs: gradcheck perturbs them in place
    assert torch.autograd.gradcheck(lambda x, *_: m.query_losses(x, ys, xq, yq), (xs, *m.parameters()))


def test_degenerate_supports_stay_finite():
    """A flat stretch (one repeated row, every target at the floor) and a crash (every target at
    the cap) give finite outputs: the prior keeps the system positive definite."""
    m = _learner()
    xs, _, xq = _tasks(2, 60, 1)
    xs[:] = xs[:, :1]
    ys = np.stack([np.full((60, 1), 0.05), np.full((60, 1), 20.0)]).astype(np.float32)
    out = m.adapt_predict(xs, ys, xq)
    assert np.isfinite(out).all()
    assert out[0, 0, 0] < out[1, 0, 0]  # a quiet support lowers the forecast, a violent one raises it


def test_a_loss_without_a_head_step_is_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        HeadNewton(D, loss="mse")


def test_adaptation_pays_on_tasks_that_differ_in_scale():
    """Each task's targets are t-distributed with a task-level scale the inputs do not show: after
    meta-training, the head adapted on 30 support rows has a far lower query loss than the same
    model's zero-shot head."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    def tasks(B, K=30, Q=20):
        level = torch.randn(B, 1, 1, generator=gen)
        x = torch.randn(B, K + Q, D, generator=gen)
        t = torch.distributions.StudentT(5.0).sample((B, K + Q, 1)) * np.sqrt(3 / 5)
        y = (t.abs() * torch.exp(level)).clamp(0.05, 20)
        return x[:, :K], y[:, :K], x[:, K:], y[:, K:]

    m = HeadNewton(D, (16,), width=4)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        m.meta_loss(*tasks(32)).backward()
        opt.step()
    xs, ys, xq, yq = tasks(400)
    with torch.no_grad():
        adapted = m.meta_loss(xs, ys, xq, yq).item()
        zero_shot = m.meta_loss(xs[:, :0], ys[:, :0], xq, yq).item()
    assert adapted < zero_shot - 0.2, (adapted, zero_shot)


def test_training_defaults_are_the_learners_own_unless_given():
    from metarisk_fast.cli import parser
    from metarisk_fast.volatility.jobs import TrainOptions

    o = TrainOptions()
    assert (o.hidden_for("head"), o.steps_for("head"), o.young_for("head")) == ((32,), 3000, True)
    assert (o.hidden_for("maml"), o.steps_for("maml"), o.young_for("maml")) == ((64, 64), 1500, False)
    given = TrainOptions(hidden=(8,), steps=7, young_listings=False)
    assert (given.hidden_for("head"), given.steps_for("head"), given.young_for("head")) == ((8,), 7, False)
    args = parser().parse_args(["train", "--prices", "default", "--out", "m", "--learner", "head",
                                      "--no-young-listings"])
    assert args.young_listings is False and args.hidden is None and args.steps is None


def test_a_window_adapts_on_the_most_recent_rows_only(tmp_path):
    """With a window of w rows the head adapts on a support's last w rows (compiled path, PyTorch
    twin, meta-training alike); the registry's head has the validated window, a model file keeps
    it, and a head file written without one adapts on every row."""
    from metarisk_fast.forecasting import load_model, make_learner, save_model
    from metarisk_fast.forecasting.registry import HEAD_WINDOW
    from metarisk_fast.tasks import TaskSpec

    m = _learner()
    xs, ys, xq = _tasks(8, 30, 2)
    every_row = m.adapt_predict(xs, ys, xq)
    m.window = 12
    got = m.adapt_predict(xs, ys, xq)
    np.testing.assert_array_equal(got, m.adapt_predict(xs[:, -12:], ys[:, -12:], xq))
    assert np.abs(got - every_row).max() > 1e-3  # the older rows did move the head
    np.testing.assert_array_equal(m.adapt_predict(xs[:, -5:], ys[:, -5:], xq),  # fewer rows: all of them
                                  HeadNewton.adapt_predict(_learner(), xs[:, -5:], ys[:, -5:], xq))
    t = [torch.from_numpy(a).double() for a in (xs, ys, xq)]
    with torch.no_grad():
        m.double()
        np.testing.assert_array_equal(m.forward_adapt_predict(*t).numpy(),
                                      m.forward_adapt_predict(t[0][:, -12:], t[1][:, -12:], t[2]).numpy())
    for bad in (0, -3, True, 2.5, "10"):
        with pytest.raises(ValueError, match="window must be a positive integer or None"):
            HeadNewton(D, window=bad)
    assert HeadNewton(D, window=np.int64(7)).window == 7
    spec = TaskSpec(scale="row")
    head = make_learner("head", spec.n_features, (8,))
    assert head.window == HEAD_WINDOW
    save_model(tmp_path / "w", "head", head, spec, history=60, hidden=(8,), info={})
    assert load_model(tmp_path / "w")[0].window == HEAD_WINDOW
    head.window = None
    save_model(tmp_path / "all", "head", head, spec, history=60, hidden=(8,), info={})
    meta_path = tmp_path / "all" / "model.json"
    assert load_model(tmp_path / "all")[0].window is None and '"head_window": null' in meta_path.read_text()
