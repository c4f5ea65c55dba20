"""The whole lifecycle of a movie site on one machine (``reelops run``, the main job of ``make run``).

:mod:`reelops.lifecycle.loop` runs the stages (world, training, deployment, drift, retraining,
canary, batch scoring, shadow) with a time budget each and records what happened;
:mod:`reelops.lifecycle.report` turns the record into one self-contained HTML page.
"""
