"""The MLflow pyfunc face of a reelops model (logged as code, "models from code").

``mlflow.pyfunc.load_model("models:/movie-recommender@production")`` runs this file and
gets predicted ratings for a frame of ``user_id, movie_id``.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class RecommenderPyfunc(PythonModel):
    """Predicted ratings for (user_id, movie_id) rows; loads the reelops model directory."""

    def load_context(self, context):
        from reelops.models import load_model

        self.model = load_model(context.artifacts["model_dir"])

    # The hint is a DataFrame: MLflow infers no schema from it (the signature is given when
    # the model is logged), and without a hint it prints advice at every registration.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return np.asarray(self.model.predict(model_input[["user_id", "movie_id"]]), dtype=np.float64)


mlflow.models.set_model(RecommenderPyfunc())
