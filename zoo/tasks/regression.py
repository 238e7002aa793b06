"""``regression`` (and tasks like ``age-estimation``): a value with an interval, computed by the plugin."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


from zoo.tasks import _draw


@dataclass(frozen=True)
class Regression:
    """A value with an interval, such as an age estimate (SSRNet: ``[age - 2, age + 3]``)."""

    value: float
    low: float
    high: float
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: the value, its unit and its interval, ``34.2 years [32.2, 37.2]``."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.value:.1f}{unit} [{self.low:.1f}, {self.high:.1f}]"

    def draw(self, image: Any) -> np.ndarray:
        """An RGB uint8 copy of ``image`` with the value and its interval written at the top left."""
        canvas = _draw.canvas(image)
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.value:.3g}{unit} [{self.low:.3g}, {self.high:.3g}]"
        _draw.label(canvas, text, 4, 4 + int(32 * _draw.scale_for(canvas)[0]) + 8, _draw.color(1))
        return canvas


def postprocess(outputs: Mapping[str, np.ndarray]) -> list[Regression]:
    """The task's default: the first output holds one value per image (no interval: ``low == high``)."""
    import numpy as np

    values = np.asarray(next(iter(outputs.values())), np.float64)
    return [Regression(value=float(v), low=float(v), high=float(v)) for v in values.reshape(len(values), -1)[:, 0]]
