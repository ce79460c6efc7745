"""Deep canonical correlation analysis: two networks trained so that their outputs correlate."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from mmgraph.gnn.models.base import ModelConfigError


def total_correlation(a: Tensor, b: Tensor, reg: float) -> Tensor:
    r"""The sum of the canonical correlations of two views (the trace norm of their whitened
    cross-covariance), differentiable: with centred rows and ridge-regularised covariances,

    .. math::
        \mathrm{corr}(A, B) = \left\lVert \hat\Sigma_{aa}^{-1/2} \hat\Sigma_{ab}
        \hat\Sigma_{bb}^{-1/2} \right\rVert_{\mathrm{tr}}, \qquad
        \hat\Sigma_{aa} = \tfrac{1}{n-1} \bar{A}^\top \bar{A} + r I

    computed in float64. Shapes: ``a`` :math:`(n, o)` and ``b`` :math:`(n, o)`, row ``i`` of
    each describing the same item; at most :math:`o` (at least 0)."""
    if a.size(0) != b.size(0) or a.size(0) < 2:
        raise ModelConfigError(
            f"total_correlation needs the same number (at least 2) of rows in both views; "
            f"got {a.size(0)} and {b.size(0)}"
        )
    a, b = a.double(), b.double()
    a, b = a - a.mean(dim=0), b - b.mean(dim=0)
    n = a.size(0)
    cov_aa = a.t() @ a / (n - 1) + reg * torch.eye(a.size(1), dtype=a.dtype, device=a.device)
    cov_bb = b.t() @ b / (n - 1) + reg * torch.eye(b.size(1), dtype=b.dtype, device=b.device)
    cov_ab = a.t() @ b / (n - 1)
    # Whitening by Cholesky factors (L L^T = Sigma) instead of Sigma^{-1/2}: L^{-1} is an
    # orthogonal rotation of Sigma^{-1/2}, so the singular values are the same, and unlike
    # eigh's the backward pass stays finite when a covariance has equal eigenvalues (dead units).
    l_a, l_b = torch.linalg.cholesky(cov_aa), torch.linalg.cholesky(cov_bb)
    left = torch.linalg.solve_triangular(l_a, cov_ab, upper=False)
    whitened = torch.linalg.solve_triangular(l_b, left.t(), upper=False).t()
    return torch.linalg.svdvals(whitened).sum()


class DeepCCA(torch.nn.Module):
    r"""The networks of `"Deep Canonical Correlation Analysis"
    <https://proceedings.mlr.press/v28/andrew13.html>`_ (Andrew et al., ICML 2013): one MLP per
    view, trained to maximise the total correlation of their outputs
    (:func:`total_correlation`, the paper's objective with all :math:`o` output dimensions):

    .. math::
        (\theta_1^*, \theta_2^*) = \arg\max_{\theta_1, \theta_2}
        \mathrm{corr}\left(f_1(X; \theta_1), f_2(Y; \theta_2)\right)

    The objective does not change when either output is linearly transformed, so the outputs
    are not yet comparable across views: a linear CCA fitted on them
    (:class:`~mmgraph.gnn.fusion.cca.CCA`) gives the shared space
    (:class:`~mmgraph.gnn.fusion.dcca_embedding.DCCAEmbedding`).

    Args:
        x_channels (int): Size of the first view.
        y_channels (int): Size of the second view.
        hidden_channels (int, optional): Hidden size of both networks. (default: :obj:`256`)
        out_channels (int, optional): Output size :math:`o` of both. (default: :obj:`64`)
        num_layers (int, optional): Hidden layers of each network. (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.0`)
        reg (float, optional): Ridge :math:`r` added to each output covariance.
            (default: :obj:`1e-3`)

    Shapes:
        - **input:** :math:`X` :math:`(n, d_x)` and :math:`Y` :math:`(n, d_y)`
        - **output:** :math:`(n, o)` each
    """

    def __init__(
        self,
        x_channels: int,
        y_channels: int,
        hidden_channels: int = 256,
        out_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        reg: float = 1e-3,
    ) -> None:
        super().__init__()
        for arg, value in (
            ("x_channels", x_channels),
            ("y_channels", y_channels),
            ("hidden_channels", hidden_channels),
            ("out_channels", out_channels),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelConfigError(f"{arg} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        if not reg > 0:
            raise ModelConfigError(f"reg must be positive, got {reg!r}")
        self.x_channels, self.y_channels = x_channels, y_channels
        self.hidden_channels, self.out_channels = hidden_channels, out_channels
        self.num_layers, self.dropout, self.reg = num_layers, dropout, reg
        self.f_x = self._network(x_channels)
        self.f_y = self._network(y_channels)

    def _network(self, in_channels: int) -> MLP:
        channels = [in_channels] + [self.hidden_channels] * self.num_layers + [self.out_channels]
        return MLP(channels, dropout=self.dropout, norm=None)

    def reset_parameters(self) -> None:
        self.f_x.reset_parameters()
        self.f_y.reset_parameters()

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.f_x(x), self.f_y(y)

    def correlation(self, x: Tensor, y: Tensor) -> Tensor:
        """The total correlation of the two networks' outputs on paired rows."""
        return total_correlation(*self(x, y), self.reg)

    def extra_repr(self) -> str:
        return (
            f"x_channels={self.x_channels}, y_channels={self.y_channels}, "
            f"hidden_channels={self.hidden_channels}, out_channels={self.out_channels}, "
            f"num_layers={self.num_layers}, reg={self.reg}"
        )
