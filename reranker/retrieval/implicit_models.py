"""Matrix factorisation retrievers through the `implicit` library: `ALS` (Hu, Koren & Volinsky
2008, implicit-feedback alternating least squares) and `BPR` (Rendle et al. 2009, Bayesian
personalised ranking). We do not reimplement either: `fit` trains implicit's CPU model on the
binary users x items matrix (each interacted item = 1; ALS confidence = ``alpha`` x 1) and keeps
its factors.

Scores are ``user_vector . item_factors`` for every catalogue item (`DenseScoresMixin`: the
whole catalogue is ranked by them; empty histories and unknown users get popular items).
The user vector is

- the trained user factor when the profile is exactly the user's training row (a known user,
  with or without a capped history of training items);
- otherwise (ad-hoc histories, or a known user with items the model has not seen them with) a
  vector solved from the fixed item factors: for ALS implicit's own ``recalculate_user`` (the
  exact ALS user step); for BPR, which implicit cannot recalculate, the mean of the profile's
  item vectors (plus the constant that multiplies the item bias). On ml-100k (validation
  stage, every training row refitted as an ad-hoc history) the mean matches the trained
  factors (NDCG@10 0.063 vs 0.064, Recall@100 0.56 vs 0.52), where a ridge solve
  ``(V^T V + reg I)^-1 V^T x`` lost 40% of NDCG@10.

`implicit` is an optional dependency (``pip install 'reranker[implicit]'``), imported inside
`fit`. With ``threads=1`` and a ``seed`` the factors are deterministic.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
from pydantic import Field, ValidationError

from ..config import BaseConfig, format_validation_error
from ..data.dataset import Dataset
from ..errors import ConfigError, ModelError
from ._dense import DenseScoresMixin
from ._fitted import FittedIndex

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'reranker[implicit]'"


class ImplicitMFConfig(BaseConfig):
    """Options shared by ALS and BPR."""

    factors: int = Field(64, ge=1, description="latent dimensions")
    regularization: float = Field(0.01, ge=0.0, description="L2 regularisation of the factors")
    iterations: int = Field(15, ge=1, description="training epochs")
    seed: int = Field(0, description="random state of the factor initialisation (and BPR sampling)")
    threads: int = Field(
        1, ge=0, description="implicit's num_threads (0: all cores); 1 makes training deterministic"
    )


class ALSConfig(ImplicitMFConfig):
    """implicit's AlternatingLeastSquares (conjugate-gradient solver)."""

    type: Literal["als"] = "als"
    regularization: float = Field(0.05, ge=0.0, description="L2 regularisation of the factors")
    alpha: float = Field(10.0, gt=0.0, description="confidence of an interaction: 1 + alpha (c_ui)")


class BPRConfig(ImplicitMFConfig):
    """implicit's BayesianPersonalizedRanking (SGD over sampled (user, positive, negative))."""

    type: Literal["bpr"] = "bpr"
    iterations: int = Field(100, ge=1, description="training epochs")
    learning_rate: float = Field(0.01, gt=0.0, description="SGD step size")


def import_implicit() -> Any:
    """The `implicit` package, or a ConfigError saying how to install it."""
    try:
        import implicit  # noqa: F401
        import implicit.cpu.als
        import implicit.cpu.bpr
    except ImportError as e:
        raise ConfigError(
            f"the ALS / BPR retrievers need the 'implicit' package ({e}); install it with "
            f"{INSTALL_HINT}"
        ) from None
    return implicit


@contextmanager
def _quiet_blas() -> Any:
    """implicit warns when BLAS is multi-threaded; its kernels do not use BLAS threads, so
    limit them to one while training (what implicit recommends)."""
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.filterwarnings("ignore", message=".*(OpenBLAS|MKL).*threads", category=RuntimeWarning)
        yield


def _make_config(cls: type[ImplicitMFConfig], config: ImplicitMFConfig | None, kwargs: dict) -> Any:
    if config is not None:
        if kwargs:
            raise ConfigError("pass either a config object or keyword options, not both")
        if not isinstance(config, cls):
            raise ConfigError(f"expected {cls.__name__}, got {type(config).__name__}")
        return config
    try:
        return cls(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, cls.__name__)) from None


class _ImplicitMF(DenseScoresMixin, FittedIndex):
    """Shared fit / user-vector / scoring logic; subclasses make the implicit model."""

    config: Any
    _config_cls: type[ImplicitMFConfig] = ImplicitMFConfig
    model_: Any
    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def __init__(self, config: ImplicitMFConfig | None = None, **kwargs: object) -> None:
        self.config = _make_config(self._config_cls, config, kwargs)

    def _make_model(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, data: Dataset) -> Self:
        """Train implicit's model on the binary users x items matrix of `data`."""
        import_implicit()
        self.fit_index(data, "implicit")
        C = self.R.astype(np.float32).tocsr()
        with _quiet_blas():
            model = self._make_model()
            model.fit(C, show_progress=False)
        if not isinstance(model.item_factors, np.ndarray):
            raise ModelError(f"{type(self).__name__}: implicit returned non-CPU factors")
        self.model_ = model
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        if not (np.isfinite(self.user_factors_).all() and np.isfinite(self.item_factors_).all()):
            raise ModelError(f"{type(self).__name__}: training diverged (non-finite factors); "
                             "lower the learning rate or raise the regularization")
        log.info("%s fitted: %d users x %d items, %d factors", type(self).__name__,
                 *self.R.shape, self.config.factors)
        return self

    # ------------------------------------------------------------------ user vectors
    def user_vectors(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        """One user vector per profile row (see the module docstring); zeros for empty rows."""
        q = P.shape[0]
        U = np.zeros((q, self.user_factors_.shape[1]), dtype=np.float32)
        nnz = np.diff(P.indptr)
        known = uidx >= 0
        train_nnz = np.diff(self.R.indptr)[np.maximum(uidx, 0)]
        # a known user's profile contains their training row: same size = same items
        same = known & (nnz == train_nnz)
        U[same] = self.user_factors_[uidx[same]]
        fold = np.flatnonzero(~same & (nnz > 0))
        if len(fold):
            U[fold] = self._fold_in(P[fold].astype(np.float32).tocsr())
        return U

    def _fold_in(self, X: sp.csr_matrix) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def cf_scores(self, P: sp.csr_matrix, uidx: np.ndarray) -> np.ndarray:
        U = self.user_vectors(P, uidx)
        return np.asarray(U @ self.item_factors_.T, dtype=np.float64)


class ALS(_ImplicitMF):
    """Implicit-feedback ALS via ``implicit.cpu.als.AlternatingLeastSquares``.

    >>> m = ALS(factors=64, iterations=15).fit(dataset)
    >>> m.retrieve(History(items=["1", "50"]), n=20)   # the user vector is recalculated
    """

    source = "als"
    _config_cls = ALSConfig

    def _make_model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        return AlternatingLeastSquares(
            factors=c.factors, regularization=c.regularization, alpha=c.alpha,
            iterations=c.iterations, random_state=c.seed, num_threads=c.threads,
            calculate_training_loss=False,
        )

    def _fold_in(self, X: sp.csr_matrix) -> np.ndarray:
        with _quiet_blas():
            return np.asarray(self.model_.recalculate_user(np.arange(X.shape[0]), X), dtype=np.float32)


class BPR(_ImplicitMF):
    """BPR via ``implicit.cpu.bpr.BayesianPersonalizedRanking`` (its factors carry an item
    bias in the last column, the users a constant 1 there).

    >>> m = BPR(factors=64, iterations=100).fit(dataset)
    """

    source = "bpr"
    _config_cls = BPRConfig

    def _make_model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        return BayesianPersonalizedRanking(
            factors=c.factors, learning_rate=c.learning_rate, regularization=c.regularization,
            iterations=c.iterations, random_state=c.seed, num_threads=c.threads,
        )

    def _fold_in(self, X: sp.csr_matrix) -> np.ndarray:
        V = self.item_factors_[:, :-1].astype(np.float64)
        cnt = np.diff(X.indptr).astype(np.float64)
        X = X.copy()
        X.data[:] = 1.0
        U = np.asarray(X @ V) / np.maximum(cnt, 1.0)[:, None]  # mean of the profile's item vectors
        return np.hstack([U, np.ones((U.shape[0], 1))]).astype(np.float32)


__all__ = ["ALS", "ALSConfig", "BPR", "BPRConfig", "INSTALL_HINT", "ImplicitMFConfig", "import_implicit"]
