"""The scripted changes a world can go through, with their default sizes and true onset."""

from __future__ import annotations

from dataclasses import dataclass, field

from reelops.simulate.population import OCCUPATION_WEIGHTS


SCENARIOS = ("none", "population_shift", "taste_shift", "new_releases", "popularity_shock")

# Default event sizes at strength 1.0. Fixed here so detectors cannot tune the world.
DEFAULT_EVENTS = {
    "population_shift": {"new_user_share": 0.5, "age_shift_years": 15.0, "student_share": 0.7},
    "taste_shift": {"user_share": 0.4, "n_genres": 3, "shift_stars": 1.0},
    "new_releases": {"extra_movie_share": 0.2, "rating_share": 0.3},
    "popularity_shock": {"rating_share": 0.1},
}
ONSET_FRACTION = 0.6


@dataclass
class Scenario:
    """A timeline of events: names, strength and their resolved parameters."""

    events: list
    strength: float = 1.0
    parameters: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, strength: float = 1.0) -> "Scenario":
        """``none``, one scenario name, or several joined by ``+`` (a combination)."""
        names = [name.strip() for name in text.split("+") if name.strip()]
        if not names:
            raise ValueError("scenario is empty")
        for name in names:
            if name not in SCENARIOS:
                raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)} (or join with +)")
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        events = [name for name in names if name != "none"]
        parameters = {name: _scaled_event(name, strength) for name in events}
        return cls(events=events, strength=strength, parameters=parameters)

    @property
    def name(self) -> str:
        return "+".join(self.events) or "none"


def _scaled_event(name: str, strength: float) -> dict:
    """Scale an event's size by strength (shares are capped below 1)."""
    base = DEFAULT_EVENTS[name]
    if name == "population_shift":
        student_base = OCCUPATION_WEIGHTS["student"] / sum(OCCUPATION_WEIGHTS.values())
        return {
            "new_user_share": min(base["new_user_share"] * strength, 0.9),
            "age_shift_years": base["age_shift_years"] * strength,
            "student_share": min(student_base + (base["student_share"] - student_base) * strength, 0.95),
        }
    if name == "taste_shift":
        return {"user_share": min(base["user_share"] * strength, 1.0), "n_genres": base["n_genres"],
                "shift_stars": base["shift_stars"] * strength}
    if name == "new_releases":
        return {"extra_movie_share": base["extra_movie_share"] * strength,
                "rating_share": min(base["rating_share"] * strength, 0.9)}
    return {"rating_share": min(base["rating_share"] * strength, 0.9)}
