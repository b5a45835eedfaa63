"""Suppression that holds against the published numbers: every figure a report prints is an equation, and cells are
hidden until no hidden count of 1 .. ``min_count_shown - 1`` can be worked out from the rest.

The per-figure rules of ``needlecare.outcomes.suppression`` (primary and one-table complementary suppression) look
at one partition at a time. A report prints more than that: a share with its Wilson interval gives back both its
numerator and its denominator, a mean with its SD and t-interval (or a mean printed to full precision) gives back
its n, a rate per 100 sessions times its count gives back the sessions, every figure prints the n it rests on, and
the counts are tied together (due = answered + not answered, paired answers <= answered, ...). :func:`protect`
writes all of that down as a system of integer cells and linear relations (:class:`Model`, built from the
report by ``needlecare.outcomes.report_cells``), works out what an attacker can pin down (:func:`closure`:
interval propagation over every relation, so ``12 = "< 11" + "suppressed"`` pins both), and while any hidden
count of 1-10 is pinned, withdraws the cheapest published cell on the way to it (every figure that gives it
back is hidden, or only its printed n where the value does not give it back), then starts again.

The attacker modelled here is stronger than the page: it is assumed to know, for every cell, whether it is 0, a
small count (1-10) or a larger one (so a hidden 0 counts as known), and all figures at full precision.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, is_dataclass, replace
from typing import Any, Literal, TypeVar

from needlecare.outcomes.results import OutcomeReport, TrajectoryPoint
from needlecare.outcomes.suppression import Figure, Reason
from needlecare.safety.clinic_config import ReportPolicy

Path = tuple[Any, ...]
Kind = Literal["value", "n"]
INF = math.inf
SEALED = "suppressed"
MAX_ROUNDS = 2000


@dataclass(frozen=True)
class Publisher:
    """A figure that gives a cell back: by its shown value (``value``) or only by the n it prints (``n``)."""

    path: Path
    kind: Kind


@dataclass
class Model:
    """The integer cells of a report, the relations ``total = sum(parts)`` between them, and who publishes each."""

    values: dict[str, int] = field(default_factory=dict)
    sensitive: set[str] = field(default_factory=set)  # cells that must never be pinned at 1-10
    relations: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    publishers: dict[str, list[Publisher]] = field(default_factory=dict)
    costs: dict[Path, float] = field(default_factory=dict)

    def cell(self, key: str, value: int, *, sensitive: bool = True) -> str:
        self.values[key] = int(value)
        if sensitive:
            self.sensitive.add(key)
        return key

    def relate(self, total: str, *parts: str) -> None:
        self.relations.append((total, parts))

    def slack(self, total: str, part: str) -> None:
        """``part <= total``: ``total = part + (an unpublished, non-sensitive rest)``."""
        rest = self.cell(f"{total}-{part}", self.values[total] - self.values[part], sensitive=False)
        self.relate(total, part, rest)

    def figure(self, path: Path, figure: Figure | None, cells: Iterable[str] = (), n_cell: str | None = None) -> None:
        """Register a figure: when shown it gives back ``cells``; the n it prints (if a number) gives ``n_cell``."""
        if figure is None:
            return
        if figure.shown:
            for key in cells:
                self.publishers.setdefault(key, []).append(Publisher(path, "value"))
        if n_cell is not None and figure.n_shown is not None:
            self.publishers.setdefault(n_cell, []).append(Publisher(path, "n"))


Bounds = dict[str, tuple[float, float]]


def prior(value: int, policy: ReportPolicy) -> tuple[float, float]:
    """What an attacker is assumed to know of any cell: whether it is 0, small or larger (conservative)."""
    if value == 0:
        return 0.0, 0.0
    if value < policy.min_count_shown:
        return 1.0, float(policy.min_count_shown - 1)
    return float(policy.min_count_shown), INF


def _sum(values: Iterable[float]) -> float:
    total = 0.0
    for value in values:
        if math.isinf(value):
            return value
        total += value
    return total


def _tighten(bounds: Bounds, total: str, parts: tuple[str, ...]) -> list[str]:
    """Narrow the members of ``total = sum(parts)`` from each other's bounds; the cells that changed."""
    t_lo, t_hi = bounds[total]
    los = [bounds[p][0] for p in parts]
    his = [bounds[p][1] for p in parts]
    sum_lo, sum_hi = _sum(los), _sum(his)
    new = {total: (sum_lo, sum_hi)}
    for i, p in enumerate(parts):
        others_hi = _sum(h for j, h in enumerate(his) if j != i)
        others_lo = sum_lo - los[i]
        new[p] = (-INF if math.isinf(others_hi) else t_lo - others_hi, t_hi - others_lo)
    changed = []
    for key, (lo, hi) in new.items():
        old_lo, old_hi = bounds[key]
        lo = max(old_lo, math.ceil(lo) if not math.isinf(lo) else lo)
        hi = min(old_hi, math.floor(hi) if not math.isinf(hi) else hi)
        if lo <= hi and (lo, hi) != (old_lo, old_hi):
            bounds[key] = (lo, hi)
            changed.append(key)
    return changed


def closure(model: Model, policy: ReportPolicy) -> Bounds:
    """The tightest integer interval of every cell that the published cells and the relations allow (a worklist
    over the relations: one is looked at again only when a bound of one of its cells moved)."""
    bounds: Bounds = {}
    for key, value in model.values.items():
        bounds[key] = (float(value), float(value)) if model.publishers.get(key) else prior(value, policy)
    of: dict[str, list[int]] = {}
    for index, (total, parts) in enumerate(model.relations):
        for key in (total, *parts):
            of.setdefault(key, []).append(index)
    queue = list(range(len(model.relations)))
    queued = set(queue)
    budget = 200 * max(len(queue), 1)
    while queue and budget > 0:
        budget -= 1
        index = queue.pop()
        queued.discard(index)
        total, parts = model.relations[index]
        for key in _tighten(bounds, total, parts):
            for other in of[key]:
                if other not in queued:
                    queued.add(other)
                    queue.append(other)
    return bounds


def leaks(model: Model, bounds: Bounds, policy: ReportPolicy) -> list[str]:
    """Sensitive cells holding 1 .. min_count_shown - 1 that the published figures pin down exactly."""
    return sorted(
        key
        for key in model.sensitive
        if policy.small(model.values[key]) and bounds[key][0] == bounds[key][1] and not model.publishers.get(key)
    ) + sorted(key for key in model.sensitive if policy.small(model.values[key]) and model.publishers.get(key))


def _cost(model: Model, key: str) -> float:
    return sum(1.0 if p.kind == "value" else 0.2 for p in model.publishers.get(key, []))


def choose(model: Model, bounds: Bounds, leaked: str) -> str | None:
    """The published cell to withdraw so that ``leaked`` is no longer pinned: breadth-first from it through the
    relations over pinned cells; at the first level with published cells, the cheapest (fewest figures to hide,
    then the smallest value, as complementary suppression picks the smallest other cell)."""
    if model.publishers.get(leaked):
        return leaked
    seen = {leaked}
    frontier = [leaked]
    while frontier:
        found: set[str] = set()
        for key in frontier:
            for total, parts in model.relations:
                members = (total, *parts)
                if key in members:
                    found |= {m for m in members if m not in seen and bounds[m][0] == bounds[m][1]}
        published = [k for k in found if model.publishers.get(k)]
        if published:
            return min(published, key=lambda k: (_cost(model, k), model.values[k], k))
        seen |= found
        frontier = sorted(found)
    return None


# ------------------------------------------------------------------------------------------------- applying


def _get(root: Any, path: Path) -> Any:
    node = root
    for step in path:
        node = node[step] if isinstance(step, int) or isinstance(node, dict) else getattr(node, step)
    return node


def _set(root: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    step, rest = path[0], path[1:]
    if isinstance(root, tuple):
        items = list(root)
        items[step] = _set(items[step], rest, value)
        return tuple(items)
    if isinstance(root, dict):
        return {**root, step: _set(root[step], rest, value)}
    if is_dataclass(root) and not isinstance(root, type):
        return replace(root, **{step: _set(getattr(root, step), rest, value)})
    raise TypeError(f"cannot set {step!r} on {type(root).__name__}")


def seal(figure: Figure, kind: Kind) -> Figure:
    """The figure with its printed n hidden (``n``), or with its value, interval and n hidden (``value``)."""
    update: dict[str, Any] = {"n_shown": None, "n_display": SEALED}
    if kind == "value" and figure.shown:
        update.update(value=None, display=SEALED, low=None, high=None, suppressed_reason=Reason.COMPLEMENTARY)
    elif not figure.shown and figure.suppressed_reason in (Reason.COMPLEMENTARY, Reason.SMALL_BASE):
        update["n_display"] = figure.display
    return figure.model_copy(update=update)


Report = tuple[OutcomeReport, tuple[TrajectoryPoint, ...]]
Root = TypeVar("Root", bound=tuple[Any, ...])
"""A report's figures as a tuple whose parts the model's paths start from (:data:`Report`, or a longer tuple)."""
Builder = Callable[[Root, ReportPolicy], Model]


def withdraw(root: Root, model: Model, key: str) -> Root:
    """Hide every figure that publishes ``key`` (its value where the value gives it back, else its printed n)."""
    result: Any = root
    for publisher in model.publishers.get(key, []):
        figure = _get(result, publisher.path)
        result = _set(result, publisher.path, seal(figure, publisher.kind))
    return result


def protect(root: Root, policy: ReportPolicy, build: Builder[Root]) -> Root:
    """Withdraw published cells until no hidden small count can be derived from the report (see the module doc).

    Nothing is done when the policy switches count suppression, complementary suppression or the hiding of
    percentages built on small counts off (the clinic then chose to show what this would hide)."""
    if policy.min_count_shown <= 1 or not (policy.complementary and policy.hide_small_percentages):
        return root
    for _ in range(MAX_ROUNDS):
        model = build(root, policy)
        bounds = closure(model, policy)
        found = leaks(model, bounds, policy)
        if not found:
            return root
        chosen = {key for key in (choose(model, bounds, leaked) for leaked in found) if key is not None}
        if not chosen:  # pragma: no cover - every pinned cell is pinned through a published one
            raise RuntimeError("a small count is pinned by figures that cannot be withdrawn")
        for key in sorted(chosen):
            root = withdraw(root, model, key)
    raise RuntimeError("suppression did not settle")  # pragma: no cover - each round hides at least one figure
