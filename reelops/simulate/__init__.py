"""A synthetic movie world with scripted drift and a feedback oracle.

The world has users with demographics, movies with genres, release years and popularity,
and hidden tastes that depend on demographics and genres. A rating comes from

    score = user bias + movie bias + genre affinity(user, movie genres) + p_user . q_movie + noise
    rating = 1 + number of cut points below the score            (whole stars 1..5)

where the four cut points are calibrated once per world so that the star shares of the
rated pairs match ml-100k's. Who rates what follows popularity and affinity (Gumbel top-k
sampling without replacement), user activity is heavy-tailed, and people rate in
sessions. Scenarios add events with a true onset (population shift, taste shift, new
releases, popularity shock); the pre-onset world is the same for every scenario of a seed.

The noise of a (user, movie) pair is a hash of (seed, user, movie), so :class:`World`
answers "what would this user rate this movie at this time" consistently with the
ratings it generated (the oracle), and can emit a stream of recommendation requests.
"""

from reelops.simulate.realism import compare_worlds, gini, realism_stats
from reelops.simulate.scenarios import DEFAULT_EVENTS, ONSET_FRACTION, SCENARIOS, Scenario
from reelops.simulate.world import World, WorldConfig
from reelops.simulate.writer import simulate, write_world

__all__ = ["DEFAULT_EVENTS", "ONSET_FRACTION", "SCENARIOS", "Scenario", "World", "WorldConfig", "compare_worlds",
           "gini", "realism_stats", "simulate", "write_world"]
