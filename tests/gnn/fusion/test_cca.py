"""Closed-form CCA: agreement with scikit-learn, the projections' correlations, state, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from sklearn.cross_decomposition import CCA as SklearnCCA

from mmgraph.core.errors import FailedPreconditionError, InvalidArgumentError
from mmgraph.gnn.fusion.cca import CCA, CCAError, CCANotFittedError


def _views(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two views (8-d and 6-d) sharing three latent factors, each with its own noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    x = z @ rng.normal(size=(3, 8)) + 0.5 * rng.normal(size=(n, 8)) + 3.0
    y = z @ rng.normal(size=(3, 6)) + 0.8 * rng.normal(size=(n, 6)) - 1.0
    return x, y


def test_canonical_correlations_match_scikit_learn() -> None:
    x, y = _views()
    ours = CCA(n_components=3, reg=0.0).fit(x, y)
    reference = SklearnCCA(n_components=3, max_iter=10_000, tol=1e-12).fit(x, y)
    x_scores, y_scores = reference.transform(x, y)
    expected = [np.corrcoef(x_scores[:, i], y_scores[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(ours.canonical_correlations_, expected, atol=1e-3)
    # three shared factors: three strong pairs, in decreasing order
    assert np.all(np.diff(ours.canonical_correlations_) <= 0)
    assert ours.canonical_correlations_[-1] > 0.5


def test_projections_are_white_within_and_paired_across_views() -> None:
    x, y = _views()
    model = CCA(n_components=4, reg=1e-9).fit(x, y)
    u, v = model.transform_x(x), model.transform_y(y)
    n = x.shape[0]
    np.testing.assert_allclose(u.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.cov(u.T), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(np.cov(v.T), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(u.T @ v / (n - 1), np.diag(model.canonical_correlations_), atol=1e-6)


def test_regularisation_shrinks_the_correlations() -> None:
    x, y = _views()
    plain = CCA(2, reg=0.0).fit(x, y).canonical_correlations_
    ridge = CCA(2, reg=1.0).fit(x, y).canonical_correlations_
    assert np.all(ridge < plain)


def test_rank_deficient_view_without_regularisation_stays_finite() -> None:
    x, y = _views()
    # duplicated columns: a singular covariance, whitened by eigh instead of Cholesky, and the
    # result must agree with the Cholesky path on the columns without the copies
    x = np.hstack([x, x[:, :2]])
    model = CCA(3, reg=0.0).fit(x, y)
    expected = CCA(3, reg=0.0).fit(x[:, :8], y).canonical_correlations_
    np.testing.assert_allclose(model.canonical_correlations_, expected, atol=1e-6)
    assert np.isfinite(model.transform_x(x)).all()


def test_transform_keeps_float32_and_float64() -> None:
    x, y = _views()
    model = CCA(2).fit(x.astype(np.float32), y)
    assert model.transform_x(x.astype(np.float32)).dtype == np.float32
    assert model.transform_y(y).dtype == np.float64
    np.testing.assert_allclose(
        model.transform_x(x.astype(np.float32)), model.transform_x(x), rtol=1e-4, atol=1e-4
    )


def test_state_dict_round_trips_through_safetensors(tmp_path) -> None:
    x, y = _views()
    model = CCA(3, reg=1e-2).fit(x, y)
    state = model.state_dict()
    assert all(isinstance(value, np.ndarray) for value in state.values())
    save_file(state, str(tmp_path / "cca.safetensors"))
    loaded = CCA.from_state_dict(load_file(str(tmp_path / "cca.safetensors")))
    assert (loaded.n_components, loaded.reg) == (3, 1e-2)
    np.testing.assert_array_equal(loaded.transform_x(x), model.transform_x(x))
    np.testing.assert_array_equal(loaded.transform_y(y), model.transform_y(y))
    np.testing.assert_array_equal(loaded.canonical_correlations_, model.canonical_correlations_)


def test_from_state_dict_refuses_missing_or_inconsistent_arrays() -> None:
    x, y = _views()
    state = CCA(3).fit(x, y).state_dict()
    with pytest.raises(CCAError, match="y_weights"):
        CCA.from_state_dict({k: v for k, v in state.items() if k != "y_weights"})
    with pytest.raises(CCAError, match="x_weights"):
        CCA.from_state_dict({**state, "x_weights": state["x_weights"][:, :2]})


@pytest.mark.parametrize(
    ("x_dim", "y_dim", "n", "k"),
    [(8, 6, 400, 7), (8, 6, 5, 5), (3, 6, 400, 4)],
)
def test_too_many_components_are_refused_naming_n_components(x_dim, y_dim, n, k) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(CCAError, match="n_components") as info:
        CCA(k).fit(rng.normal(size=(n, x_dim)), rng.normal(size=(n, y_dim)))
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidArgumentError)


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(CCAError, match="n_components"):
        CCA(0)
    with pytest.raises(CCAError, match="reg"):
        CCA(2, reg=-1.0)
    x, y = _views()
    with pytest.raises(CCAError, match="same rows"):
        CCA(2).fit(x, y[:-1])
    with pytest.raises(CCAError, match="Y must be finite"):
        CCA(2).fit(x, np.where(y > 2, np.nan, y))
    model = CCA(2)
    with pytest.raises(CCANotFittedError) as info:
        model.transform_x(x)
    assert isinstance(info.value, FailedPreconditionError)
    with pytest.raises(CCAError, match="8 columns"):
        model.fit(x, y).transform_x(x[:, :5])
