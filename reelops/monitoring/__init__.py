"""Monitoring: data drift, prediction drift, model drift and concept drift, and retraining.

A :class:`Monitor` is built at training time from the model's training rows (inputs) and
held-out rows (errors), saved with the model version (``MODEL_DIR/monitoring/``, Alibi
Detect detectors through ``save_detector``), and fed windows of production data:

- **user data drift**: age, gender and occupation of the users who show up, each user
  counted once per window (people rate in sessions: counted per rating, every window of
  real data looks drifted); KS for numeric and chi-square for categorical features
  (Alibi Detect ``TabularDrift``), calibrated against the training windows' own variation,
  Bonferroni over features;
- **movie data drift**: age at rating time, primary genre, training-popularity band and
  "never rated before" of the movies rated, at most ``pairs_per_user`` ratings per user,
  and the share of ratings on titles the model never saw;
- **prediction drift**: the model's predicted ratings for known users (against held-out
  rows) and the training popularity of the movies every user asks about (against
  training windows), each a ``TabularDrift``, and how concentrated the window's activity
  is on one title (a z-test of its log against the training windows);
- **model drift**: once ratings (labels) arrive, two tests on the errors of the personal
  path: the absolute error against the error on held-out rows at training time, a
  cluster-robust t-test (users are the clusters: one user's errors are not independent,
  which Alibi Detect's independent-sample tests assume); and whether a user's errors now
  depend on the genre of the movie (tastes changed), a test within each user against the
  association the held-out errors already had, with running evidence over windows; both
  calibrated by a backtest (a copy of the model trained on the earlier training period
  and monitored on the later one);
- **verdict**: ``concept`` when errors move and inputs do not, ``data`` when inputs move
  and errors do not, ``both``, ``none``, or ``unjudged`` when no detector could judge the
  window, with the evidence. Every feature reports a calibrated p-value and the size of its
  change; an alarm needs both a significant and a material change (:class:`Materiality`),
  at the detector's level (0.005 a window for data and prediction drift, 0.04 for model
  drift, whose evidence is a few hundred errors).

Inputs a detector cannot judge (missing columns, NaN, unknown categories, users without
demographics) are counted and reported; they never become a silent "no drift" or a false
"drift".
"""

from reelops.monitoring.monitor import (DETECTORS, VERDICTS, DetectorResult, Findings, Materiality, Monitor,
                                        MonitoringInputError, build_monitor, load_monitor, monitor_dataset)
from reelops.monitoring.windows import REQUIRED_COLUMNS, WINDOW_SIZE, time_windows

__all__ = ["DETECTORS", "REQUIRED_COLUMNS", "VERDICTS", "WINDOW_SIZE", "DetectorResult", "Findings", "Materiality", "Monitor",
           "MonitoringInputError", "build_monitor", "load_monitor", "monitor_dataset", "time_windows"]
