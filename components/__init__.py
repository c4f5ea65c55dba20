"""KFP components, one per lifecycle stage, all on the one reelops image.

Each is a Python component with ``base_image=IMAGE`` and ``install_kfp_package=False``:
on a cluster the step runs in the reelops container, and ``kfp.local.SubprocessRunner``
runs the same component in the installed environment. The bodies are thin: artifact paths
in, a ``reelops.steps`` call, metadata out.
"""

from reelops.components.batch_predict import batch_predict
from reelops.components.combine import combine_datasets
from reelops.components.detect_drift import detect_drift
from reelops.components.evaluate import evaluate
from reelops.components.features import engineer_features
from reelops.components.gate import gate
from reelops.components.image import IMAGE
from reelops.components.ingest import ingest
from reelops.components.outcome import record_outcome
from reelops.components.register import register
from reelops.components.train import train
from reelops.components.validate import validate

__all__ = ["IMAGE", "batch_predict", "combine_datasets", "detect_drift", "engineer_features", "evaluate", "gate",
           "ingest", "record_outcome", "register", "train", "validate"]
