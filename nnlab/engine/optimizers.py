"""Update rules. Each works on the network's whole parameter vector θ and gradient vector g at once.

- ``sgd``:       θ ← θ − η g
- ``momentum``:  v ← μ v − η g;  θ ← θ + v
- ``nesterov``:  v ← μ v − η g;  θ ← θ + μ v − η g   (Sutskever's form of the look-ahead step)
- ``adam``:      m ← β₁ m + (1 − β₁) g;  s ← β₂ s + (1 − β₂) g²;
                 θ ← θ − η m̂ / (√ŝ + ε)  with m̂ = m / (1 − β₁ᵗ), ŝ = s / (1 − β₂ᵗ)
"""

from __future__ import annotations

import numpy as np


class SGD:
    def __init__(self, params: np.ndarray, grad: np.ndarray, learning_rate: float, **_) -> None:
        self.params, self.grad, self.learning_rate = params, grad, learning_rate
        self._step = np.empty_like(params)

    def step(self) -> None:
        np.multiply(self.grad, self.learning_rate, out=self._step)
        np.subtract(self.params, self._step, out=self.params)


class Momentum(SGD):
    def __init__(self, params, grad, learning_rate, momentum: float = 0.9, **_) -> None:
        super().__init__(params, grad, learning_rate)
        self.momentum = momentum
        self.velocity = np.zeros_like(params)

    def step(self) -> None:
        v = self.velocity
        v *= self.momentum
        np.multiply(self.grad, self.learning_rate, out=self._step)
        v -= self._step
        self.params += v


class Nesterov(Momentum):
    def step(self) -> None:
        v = self.velocity
        v *= self.momentum
        np.multiply(self.grad, self.learning_rate, out=self._step)
        v -= self._step
        self.params -= self._step
        np.multiply(v, self.momentum, out=self._step)
        self.params += self._step


class Adam(SGD):
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

    def step(self) -> None:
        self.t += 1
        m, s, g, tmp = self.first, self.second, self.grad, self._step
        m *= self.beta1
        np.multiply(g, 1.0 - self.beta1, out=tmp)
        m += tmp
        s *= self.beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.beta2
        s += tmp
        # fold both bias corrections into the step size and the epsilon
        correction1 = 1.0 - self.beta1**self.t
        root_correction2 = np.sqrt(1.0 - self.beta2**self.t)
        np.sqrt(s, out=tmp)
        tmp += self.epsilon * root_correction2
        np.divide(m, tmp, out=tmp)
        tmp *= self.learning_rate * root_correction2 / correction1
        self.params -= tmp


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam}
