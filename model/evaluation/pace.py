"""How far a compare run has come, and about how long it has left."""

from __future__ import annotations

from collections.abc import Sequence


def duration_text(seconds: float) -> str:
    """``seconds`` as a person reads a wait: "40 s", "12 min", "3 h 05 min"."""
    if seconds < 0:
        raise ValueError(f"a duration must be >= 0, got {seconds}")
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class Pace:
    """Pair records done of a run's total, and the time left at the pace of the trainings
    done so far. Each pair has a weight, the models it trains when nothing is cached (an
    ensemble of K trains K models a replica; a pair whose replica A another table already
    trained trains only B). The pace is seconds per model actually trained: after a restart a
    pair may find A cached and train B alone, and counts one model, not two. A pair read from
    its record, or measured on exports that were all there already, trained nothing and sets
    no pace."""

    def __init__(self, weights: Sequence[int]) -> None:
        if any(w < 1 for w in weights):
            raise ValueError(f"pair weights must be >= 1, got {list(weights)}")
        self.total = len(weights)
        self.weight_left = sum(weights)
        self.done = self.reused = 0
        self.seconds = 0.0
        self.weight_trained = 0

    def finished(self, weight: int, seconds: float, trained: int, reused: bool = False
                 ) -> str:
        """Counts one pair (``weight`` planned trainings, ``trained`` models trained now, in
        ``seconds``; ``reused``: read from an earlier run's record) and says where the run
        stands."""
        if trained < 0 or (reused and trained):
            raise ValueError(f"a pair {'read from its record ' if reused else ''}cannot have "
                             f"trained {trained} models")
        if self.done >= self.total:
            raise ValueError(f"all {self.total} pairs were already counted")
        self.done += 1
        self.weight_left -= weight
        self.reused += reused
        if trained:
            self.seconds += seconds
            self.weight_trained += trained
        line = f"{self.done}/{self.total} pair records"
        if self.reused:
            line += f" ({self.reused} from earlier runs)"
        if self.weight_trained and self.weight_left:
            left = self.weight_left * self.seconds / self.weight_trained
            line += f", about {duration_text(left)} left at this run's pace"
        return line
