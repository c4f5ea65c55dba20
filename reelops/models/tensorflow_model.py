"""A TensorFlow (Keras) biased matrix factorization, trained on CPU.

TensorFlow is imported inside :meth:`TensorFlowMF.fit` only. The trained factors and
biases are exported as arrays beside the Keras weights, so loading and serving the model
needs numpy alone (no TensorFlow start-up in the predictor).
"""

from __future__ import annotations

import os

import numpy as np

from reelops.models.classic import MatrixFactorization


def _build_keras_model(n_users: int, n_movies: int, n_factors: int, reg: float, mean: float, seed: int):
    import keras
    import tensorflow as tf

    class BiasedMF(keras.Model):
        """mean + b_u + b_i + p_u . q_i, with L2 on the embeddings each example touches."""

        def __init__(self):
            super().__init__()
            init = keras.initializers.RandomNormal(0.0, 0.05, seed=seed)
            self.user_factors = keras.layers.Embedding(n_users, n_factors, embeddings_initializer=init)
            self.movie_factors = keras.layers.Embedding(n_movies, n_factors, embeddings_initializer=init)
            self.user_bias = keras.layers.Embedding(n_users, 1, embeddings_initializer="zeros")
            self.movie_bias = keras.layers.Embedding(n_movies, 1, embeddings_initializer="zeros")

        def call(self, pairs):
            users, movies = pairs[:, 0], pairs[:, 1]
            p, q = self.user_factors(users), self.movie_factors(movies)
            bu, bi = self.user_bias(users)[:, 0], self.movie_bias(movies)[:, 0]
            # Per-example penalty (as in SGD matrix factorization), not a penalty on whole tables.
            self.add_loss(reg * tf.reduce_mean(tf.reduce_sum(p * p, 1) + tf.reduce_sum(q * q, 1))
                          + 0.1 * reg * tf.reduce_mean(bu * bu + bi * bi))
            return mean + bu + bi + tf.reduce_sum(p * q, 1)

    return BiasedMF()


class TensorFlowMF(MatrixFactorization):
    """Biased matrix factorization in Keras (Adam, large batches, per-example L2).

    The trained tables are stored as the same arrays as :class:`MatrixFactorization`, so
    prediction, ranking and persistence are shared and serving never needs TensorFlow.

    Defaults chosen on two folds of ml-100k (RMSE about 0.908, under 20 s per fit on 2 cores).

    Args:
        n_factors: latent dimensions.
        epochs: passes over the training ratings.
        batch_size: ratings per step.
        learning_rate: Adam step size.
        reg: L2 penalty per example.
        seed: initialisation and shuffling.
    """

    algorithm = "tensorflow"

    def __init__(self, n_factors: int = 64, epochs: int = 60, batch_size: int = 4096, learning_rate: float = 0.01,
                 reg: float = 0.1, seed: int = 0):
        self.n_factors = n_factors
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.reg = reg
        self.seed = seed

    def _fit_core(self, users, movies, ratings, progress=False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        from reelops.console import progress as progress_bar

        keras.utils.set_random_seed(self.seed)
        tf.config.experimental.enable_op_determinism()
        mean = float(ratings.mean())
        model = _build_keras_model(len(self.user_ids_), len(self.movie_ids_), self.n_factors, self.reg, mean, self.seed)
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse")
        pairs = np.stack([users, movies], axis=1).astype(np.int32)
        with progress_bar(self.epochs, "train tensorflow", enabled=progress, unit="epoch") as bar:

            class Progress(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    bar.set_postfix_str(f"loss {logs.get('loss', float('nan')):.4f}")
                    bar.update(1)

            model.fit(pairs, ratings.astype(np.float32), batch_size=self.batch_size, epochs=self.epochs, verbose=0,
                      shuffle=True, callbacks=[Progress()])
        self.keras_model_ = model
        self.mf_mean_ = mean
        self.user_factors_ = model.user_factors.embeddings.numpy()
        self.movie_factors_ = model.movie_factors.embeddings.numpy()
        self.mf_user_bias_ = model.user_bias.embeddings.numpy()[:, 0]
        self.mf_movie_bias_ = model.movie_bias.embeddings.numpy()[:, 0]

    def save(self, folder, metadata=None):
        path = super().save(folder, metadata)
        if hasattr(self, "keras_model_"):
            (path / "keras").mkdir(exist_ok=True)
            self.keras_model_.save_weights(path / "keras" / "biased_mf.weights.h5")
        return path
