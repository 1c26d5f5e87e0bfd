"""Update rules. Each works on the network's whole parameter vector θ and gradient vector g at once.

- ``sgd``:       θ ← θ − η g
- ``momentum``:  v ← μ v − η g;  θ ← θ + v
- ``nesterov``:  v ← μ v − η g;  θ ← θ + μ v − η g   (Sutskever's form of the look-ahead step)
- ``adam``:      m ← β₁ m + (1 − β₁) g;  s ← β₂ s + (1 − β₂) g²;
                 θ ← θ − η m̂ / (√ŝ + ε)  with m̂ = m / (1 − β₁ᵗ), ŝ = s / (1 − β₂ᵗ)

Adam's ε is added to √ŝ, the bias-corrected root, as in Kingma & Ba's paper and PyTorch's
``Adam``. scikit-learn adds it to the uncorrected √s (θ ← θ − η √(1 − β₂ᵗ) / (1 − β₁ᵗ) · m /
(√s + ε)): the paper's rule with ε replaced by ε / √(1 − β₂ᵗ), larger while t is small. That is
the one residual difference between nnlab's Adam and scikit-learn's.

``weight_decay`` λ > 0 wraps any rule in ``WeightDecay``: θ ← θ − η λ θ, with η the current
(scheduled) learning rate, just before the rule's own step. That is decoupled weight decay
(Loshchilov & Hutter; PyTorch's ``AdamW``, and ``SGDW`` for the others), not an L2 term in the
gradient: ``train``'s ``alpha`` is that. Every parameter decays, biases included, as PyTorch's
optimizers do for a parameter group by default.

The learning rate is the attribute ``learning_rate``; the training loop sets it at each epoch.
What a rule carries from update to update (momentum's v, Adam's m, s and t) is its ``state()``,
a dict of arrays that ``load_state`` puts back, so a paused run resumes exactly.
"""

from __future__ import annotations

import numpy as np

from nnlab.engine import kernels


class SGD:
    """Each rule's ``step`` is its NumPy reference, ``numpy_step``, or the same arithmetic fused
    into one compiled pass (nnlab/engine/kernels.py), chosen when the rule is built."""

    _kernel_name = "sgd"

    def __init__(self, params: np.ndarray, grad: np.ndarray, learning_rate: float, **_) -> None:
        self.params, self.grad, self.learning_rate = params, grad, learning_rate
        self._step = np.empty_like(params)
        compiled = kernels.compiled(params.shape[-1])
        self._kernel = None if compiled is None else getattr(compiled, self._kernel_name)

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._learning_rate = value
        self._rate = self._column(value)

    def _column(self, value) -> np.ndarray:
        """A hyperparameter as a column of the rows ``_rows`` gives, (K, 1): one value for
        every run, or each run's (a pack's columns). A kernel reads row k of it, so a column
        of any other length is an error here, not a read past its end."""
        column = np.asarray(value, dtype=self.params.dtype).reshape(-1, 1)
        runs = 1 if self.params.ndim == 1 else len(self.params)
        return column if len(column) == runs else np.broadcast_to(column, (runs, 1))

    def _rows(self, vector: np.ndarray) -> np.ndarray:
        """θ, g or a state vector as the compiled kernels take them: (K, P), a run a row."""
        return vector.reshape(-1, vector.shape[-1])

    def step(self) -> None:
        if self._kernel is None:
            self.numpy_step()
        else:
            self.compiled_step()

    def numpy_step(self) -> None:
        np.multiply(self.grad, self.learning_rate, out=self._step)
        np.subtract(self.params, self._step, out=self.params)

    def compiled_step(self) -> None:
        self._kernel(self._rows(self.params), self._rows(self.grad), self._rate)

    def state(self) -> dict[str, np.ndarray]:
        """Copies of what the next updates depend on besides θ and g: nothing, for SGD."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for name, value in state.items():
            getattr(self, name)[...] = value


class Momentum(SGD):
    _kernel_name = "momentum"

    def __init__(self, params, grad, learning_rate, momentum: float = 0.9, **_) -> None:
        super().__init__(params, grad, learning_rate)
        self.momentum = momentum
        self.velocity = np.zeros_like(params)
        self._momentum = self._column(momentum)

    def compiled_step(self) -> None:
        rows = self._rows
        v = rows(self.velocity)
        self._kernel(rows(self.params), rows(self.grad), v, self._rate, self._momentum)

    def numpy_step(self) -> None:
        v = self.velocity
        v *= self.momentum
        np.multiply(self.grad, self.learning_rate, out=self._step)
        v -= self._step
        self.params += v

    def state(self) -> dict[str, np.ndarray]:
        return {"velocity": self.velocity.copy()}


class Nesterov(Momentum):
    _kernel_name = "nesterov"

    def numpy_step(self) -> None:
        v = self.velocity
        v *= self.momentum
        np.multiply(self.grad, self.learning_rate, out=self._step)
        v -= self._step
        self.params -= self._step
        np.multiply(v, self.momentum, out=self._step)
        self.params += self._step


class Adam(SGD):
    _kernel_name = "adam"

    def __init__(
        self,
        params,
        grad,
        learning_rate,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        **_,
    ) -> None:
        super().__init__(params, grad, learning_rate)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.first = np.zeros_like(params)
        self.second = np.zeros_like(params)
        self.t = 0
        column = self._column
        self._betas = (
            column(beta1),
            column(1.0 - beta1),
            column(beta2),
            column(1.0 - beta2),
        )

    def numpy_step(self) -> None:
        self.t += 1
        m, s, g, tmp = self.first, self.second, self.grad, self._step
        m *= self.beta1
        np.multiply(g, 1.0 - self.beta1, out=tmp)
        m += tmp
        s *= self.beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.beta2
        s += tmp
        epsilon, scale = self._folded()
        np.sqrt(s, out=tmp)
        tmp += epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= scale
        self.params -= tmp

    def compiled_step(self) -> None:
        self.t += 1
        epsilon, scale = self._folded()
        rows = self._rows
        self._kernel(
            rows(self.params),
            rows(self.grad),
            rows(self.first),
            rows(self.second),
            *self._betas,
            self._column(epsilon),
            self._column(scale),
        )

    def _folded(self) -> tuple:
        """Both bias corrections folded into the epsilon and the step size. np.power, so that
        a pack of runs (each β a column) computes them as one run does; in the parameters'
        dtype, so that a float32 run alone (NumPy float64 scalars) rounds them as a pack's
        float32 columns are rounded."""
        correction1 = 1.0 - np.power(self.beta1, self.t)
        root_correction2 = np.sqrt(1.0 - np.power(self.beta2, self.t))
        dtype = self.params.dtype
        return (
            np.asarray(self.epsilon * root_correction2, dtype),
            np.asarray(self.learning_rate * root_correction2 / correction1, dtype),
        )

    def state(self) -> dict[str, np.ndarray]:
        return {"first": self.first.copy(), "second": self.second.copy(), "t": np.int64(self.t)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.first[...], self.second[...] = state["first"], state["second"]
        self.t = int(state["t"])


class WeightDecay:
    """Decoupled weight decay around an update rule: θ ← θ (1 − η λ), then the rule's step."""

    def __init__(self, rule: SGD, weight_decay: float) -> None:
        self.rule, self.weight_decay = rule, weight_decay

    @property
    def learning_rate(self) -> float:
        return self.rule.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.rule.learning_rate = value

    def step(self) -> None:
        self.rule.params *= 1.0 - self.rule.learning_rate * self.weight_decay
        self.rule.step()

    def state(self) -> dict[str, np.ndarray]:
        """The rule's: decay keeps nothing between updates."""
        return self.rule.state()

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.rule.load_state(state)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam}


def make_optimizer(
    name: str,
    params: np.ndarray,
    grad: np.ndarray,
    learning_rate: float,
    weight_decay: float = 0.0,
    **hyperparameters,
) -> SGD | WeightDecay:
    """The rule ``name`` over ``params`` and ``grad``; wrapped in ``WeightDecay`` only when
    ``weight_decay`` > 0, so a run without decay does no work for it."""
    rule = OPTIMIZERS[name](params, grad, learning_rate, **hyperparameters)
    return WeightDecay(rule, weight_decay) if weight_decay > 0 else rule
