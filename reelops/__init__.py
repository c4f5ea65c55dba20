"""reelops: the MLOps lifecycle of a movie recommender on Kubeflow Pipelines and KServe.

The core library never imports ``kfp``; KFP code lives in ``reelops.components`` and
``reelops.pipelines``.
"""

__version__ = "0.1.0"
