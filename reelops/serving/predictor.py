"""The recommender as a ``kserve.Model``: V1 JSON and V2 (Open Inference Protocol) tensors.

V1 ``POST /v1/models/{name}:predict`` takes ``{"instances": [...]}``; each instance is one of

- ``{"user_id": 196, "k": 10, "exclude_rated": true}``: top-K recommendations;
- ``{"age": 24, "gender": "F", "occupation": "student", "k": 5}`` (``user_id`` optional):
  a new user described by demographics, served by the side features;
- ``{"user_id": 196, "movie_id": 242}``: a predicted rating.

Every answer names the model version and the path that served it (``personal``,
``side_features``, ``popularity``). V2 ``POST /v2/models/{name}/infer`` takes a ``user_id``
tensor (INT64/INT32, shape [n]) and an optional ``k`` tensor ([1]) and returns
``movie_ids`` and ``scores`` tensors of shape [n, k]; gRPC serves the same.

The predictor is thin: it validates, batches the instances into one library call per
kind, and shapes the answer; features and cold-start paths are the library's, the same
code as training and batch scoring.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client import Counter

from reelops.serving import import_kserve

kserve = import_kserve()
from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402

MAX_K = 100
DEFAULT_K = 10

REQUESTS = Counter("reelops_predictions", "Answers served, by model version and serving path", ["model_version", "path"])
COLD_STARTS = Counter("reelops_cold_starts", "Answers for users without history", ["model_version", "path"])

_DEMOGRAPHICS = ("age", "gender", "occupation")
_KNOWN_FIELDS = {"user_id", "movie_id", "k", "exclude_rated", *_DEMOGRAPHICS}


INT64_RANGE = (-(2**63), 2**63 - 1)
INT32_RANGE = (-(2**31), 2**31 - 1)
_SHOWN_CHARS = 40


def _reject(reason: str, message: str):
    """Refuse a request: a 400 (V1, V2) or INVALID_ARGUMENT (gRPC) naming the field.

    The reason (one of a fixed set of literals) is noted for the error counter, which
    counts every non-2xx answer once, in the server's middleware.
    """
    from reelops.serving.guard import note_reason

    note_reason(reason)
    raise InvalidInput(message)


def shown(value) -> str:
    """A value as an error message shows it: its repr, cut to a short prefix (never echo 11 MB)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text):,} characters)"


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_int64(value) -> bool:
    return _is_int(value) and INT64_RANGE[0] <= value <= INT64_RANGE[1]


def _int_vector(tensor, where: str) -> list:
    """The values of a one-dimensional integer tensor, checked as sent: never reshaped, cast
    or truncated (5.7 is not user 5), whether they came as JSON data or as raw bytes."""
    if tensor.datatype not in ("INT64", "INT32"):
        _reject("bad_field", f"{where}: datatype must be INT64 or INT32, got {shown(tensor.datatype)}")
    shape = list(tensor.shape or [])
    if len(shape) != 1 or not _is_int(shape[0]) or shape[0] < 0:
        _reject("bad_shape", f"{where}: shape must be [n] (one dimension), got {shown(shape)}")
    count = shape[0]
    low, high = INT64_RANGE if tensor.datatype == "INT64" else INT32_RANGE
    raw = getattr(tensor, "_raw_data", None)
    if raw is not None:
        width = 8 if tensor.datatype == "INT64" else 4
        if len(raw) != count * width:
            _reject("bad_shape", f"{where}: shape [{count}] needs {count * width} bytes of raw contents, "
                                 f"got {len(raw)}")
        return np.frombuffer(raw, dtype="<i8" if width == 8 else "<i4").tolist()
    data = tensor.data
    if not isinstance(data, (list, tuple)):
        _reject("bad_field", f"{where}.data: must be a list of integers, got {shown(data)}")
    if len(data) != count:
        _reject("bad_shape", f"{where}: shape [{count}] does not match its {len(data)} values")
    for index, value in enumerate(data):
        if not _is_int(value) or not low <= value <= high:
            _reject("bad_field", f"{where}.data[{index}]: must be an integer in the {tensor.datatype} range, "
                                 f"got {shown(value)}")
    return list(data)


class RecommenderModel(kserve.Model):
    """A reelops model served by KServe.

    Args:
        name: the model name in URLs (``/v1/models/{name}:predict``).
        model_dir: a local model directory, or
        storage_uri: a KServe storage URI (``gs://``, ``s3://``, ``pvc://``, ``file://``), or
        alias: a registry alias (``production``, ``canary``), resolved at load.
        max_instances: the most instances one request may carry.
        payload_logger: a :class:`reelops.serving.payload_logger.PayloadLogger`, or None.
        load_delay: seconds to wait before loading (lets tests and demos observe the
            not-ready state; also ``REELOPS_SERVE_LOAD_DELAY``).
        allow_unblessed: serve a model the gate did not bless (otherwise loading refuses it).
    """

    def __init__(self, name: str = "movie-recommender", model_dir: str | None = None, storage_uri: str | None = None,
                 alias: str | None = None, max_instances: int = 1000, payload_logger=None, load_delay: float = 0.0,
                 allow_unblessed: bool = False):
        super().__init__(name)
        if sum(x is not None for x in (model_dir, storage_uri, alias)) != 1:
            raise ValueError("give exactly one of model_dir, storage_uri or alias")
        self.model_dir, self.storage_uri, self.alias = model_dir, storage_uri, alias
        self.max_instances = max_instances
        self.allow_unblessed = allow_unblessed
        self.payload_logger = payload_logger
        self.load_delay = float(os.environ.get("REELOPS_SERVE_LOAD_DELAY", load_delay))
        self.recommender = None
        self.version = None
        self._counter_cache: dict = {}

    # ------------------------------------------------------------------ loading

    def load(self) -> bool:
        """Find the model directory, load it, warm it up; then the model is ready."""
        from reelops.gate import check_servable
        from reelops.models import load_model

        if self.load_delay:
            time.sleep(self.load_delay)
        if self.alias:
            from reelops import registry

            self.version = registry.resolve_alias(self.alias)
            if not self.allow_unblessed:
                check_servable(version=self.version, alias=self.alias)
            directory = registry.download_model(self.version)
        else:
            if self.storage_uri:
                from kserve_storage import Storage

                directory = Storage.download(self.storage_uri)
            else:
                directory = self.model_dir
            if not self.allow_unblessed:
                check_servable(model_dir=directory)
        self.recommender = load_model(directory)
        # A registry alias names its version; a model directory is known by its folder name.
        self.version = self.version or Path(directory).name
        # Known users' scores computed once (when the table fits in 256 MB): a request reads
        # one row instead of scoring, with identical answers.
        self.recommender.keep_known_scores()
        self.recommender.warm_up()  # compiled kernels and caches ready before traffic
        # Everything loaded so far lives as long as the server: frozen, the garbage
        # collector's full passes stop walking it (hundreds of thousands of objects from
        # pandas, kserve and the model) in the middle of requests.
        gc.collect()
        gc.freeze()
        self.ready = True
        return self.ready

    # ------------------------------------------------------------------ V1

    def _parse_v1(self, payload) -> list:
        if not isinstance(payload, dict):
            _reject("bad_body", "body: must be a JSON object with an 'instances' list")
        if "instances" not in payload:
            _reject("missing_field", "instances: required (a list of objects)")
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            _reject("bad_field", "instances: must be a non-empty list of objects")
        if len(instances) > self.max_instances:
            _reject("too_many_instances", f"instances: {len(instances)} instances exceed the limit of {self.max_instances}")
        return [self._parse_instance(index, instance) for index, instance in enumerate(instances)]

    def _parse_instance(self, index: int, instance) -> dict:
        where = f"instances[{index}]"
        if not isinstance(instance, dict):
            _reject("bad_field", f"{where}: must be an object")
        if not _KNOWN_FIELDS.issuperset(instance):
            unknown = sorted(set(instance) - _KNOWN_FIELDS)
            _reject("unknown_field", f"{where}.{shown(unknown[0])[1:-1]}: unknown field "
                                     f"(expected {', '.join(sorted(_KNOWN_FIELDS))})")
        described = (instance.get("age") is not None or instance.get("gender") is not None
                     or instance.get("occupation") is not None)
        if "user_id" not in instance and not described:
            _reject("missing_field", f"{where}.user_id: required unless the user is described by age, gender or occupation")
        for field in ("user_id", "movie_id"):
            if field in instance and not _is_int64(instance[field]):
                _reject("bad_field", f"{where}.{field}: must be a 64-bit integer, got {shown(instance[field])}")
        k = instance.get("k", DEFAULT_K)
        if not _is_int(k) or not 1 <= k <= MAX_K:
            _reject("k_out_of_range", f"{where}.k: must be an integer in 1..{MAX_K}, got {shown(k)}")
        exclude = instance.get("exclude_rated", True)
        if not isinstance(exclude, bool):
            _reject("bad_field", f"{where}.exclude_rated: must be true or false, got {shown(exclude)}")
        age = instance.get("age")
        if age is not None and (not isinstance(age, Real) or isinstance(age, bool) or not 1 <= age <= 120):
            _reject("bad_field", f"{where}.age: must be a number in 1..120, got {shown(age)}")
        for field in ("gender", "occupation"):
            if instance.get(field) is not None and not isinstance(instance[field], str):
                _reject("bad_field", f"{where}.{field}: must be a string, got {shown(instance[field])}")
        if instance.get("gender") is not None and instance["gender"] not in ("M", "F"):
            _reject("bad_field", f"{where}.gender: must be 'M' or 'F', got {shown(instance['gender'])}")
        return {"user_id": instance.get("user_id"), "movie_id": instance.get("movie_id"), "k": k,
                "exclude_rated": exclude, "age": age, "gender": instance.get("gender"),
                "occupation": instance.get("occupation"), "described": described}

    def _answer_v1(self, instances: list) -> list:
        answers: list = [None] * len(instances)
        sent_ids = [instance["user_id"] for instance in instances]
        # Each described instance is answered from its own fields: it gets an id of its own
        # that no instance of the request uses and the model does not know, so two
        # instances with one user_id and different demographics never share a description,
        # and a client's negative id never meets a placeholder.
        taken = {i for i in sent_ids if i is not None}
        placeholder = -1
        for instance in instances:
            if instance["user_id"] is None or (instance["described"] and not self._knows(instance["user_id"])):
                while placeholder in taken:
                    placeholder -= 1
                instance["user_id"] = placeholder
                taken.add(placeholder)
        described = [i for i in instances if i["described"]]
        demographics = pd.DataFrame([{k: i[k] for k in ("user_id", *_DEMOGRAPHICS)} for i in described]) if described else None
        ratings = [p for p, i in enumerate(instances) if i["movie_id"] is not None]
        if ratings:
            values, paths = self.recommender.predict_ratings([instances[p]["user_id"] for p in ratings],
                                                             [instances[p]["movie_id"] for p in ratings], demographics)
            for p, value, path in zip(ratings, values, paths):
                answers[p] = {"user_id": instances[p]["user_id"], "movie_id": instances[p]["movie_id"],
                              "rating": round(float(value), 4), "path": path}
        groups: dict = {}
        for p, instance in enumerate(instances):
            if instance["movie_id"] is None:
                groups.setdefault((instance["k"], instance["exclude_rated"]), []).append(p)
        for (k, exclude), positions in groups.items():
            # One thread per request: the server's cores belong to the HTTP loop and the clients too.
            result = self.recommender.recommend([instances[p]["user_id"] for p in positions], k=k,
                                                exclude_rated=exclude, demographics=demographics, parallel=False)
            for row, record in enumerate(result.to_records(self.recommender.titles_)):
                answers[positions[row]] = record
        for answer, sent in zip(answers, sent_ids):
            answer["user_id"] = sent  # as the client sent it (None when it sent none)
            answer["model_version"] = self.version
        self._count([answer["path"] for answer in answers])
        return answers

    def _knows(self, user_id: int) -> bool:
        """Whether the model has a personal path for this user."""
        return bool(self.recommender.personal_index([user_id])[0] >= 0)

    def _count(self, paths: list) -> None:
        """One counter update per path and request (not per user: a 100-user request is one call)."""
        for path in set(paths):
            n = paths.count(path)
            for counter in self._counters(path):
                counter.inc(n)

    def _counters(self, path: str) -> tuple:
        """The labelled counters of a path, looked up once (``labels()`` takes a lock per call)."""
        key = (self.version, path)
        counters = self._counter_cache.get(key)
        if counters is None:
            counters = (REQUESTS.labels(model_version=self.version, path=path),)
            if path != "personal":
                counters += (COLD_STARTS.labels(model_version=self.version, path=path),)
            self._counter_cache[key] = counters
        return counters

    # ------------------------------------------------------------------ V2

    def get_input_types(self):
        return [{"name": "user_id", "datatype": "INT64", "shape": [-1]}, {"name": "k", "datatype": "INT32", "shape": [1]}]

    def get_output_types(self):
        return [{"name": "movie_ids", "datatype": "INT64", "shape": [-1, -1]},
                {"name": "scores", "datatype": "FP32", "shape": [-1, -1]}]

    def _parse_v2(self, request: InferRequest) -> dict:
        inputs: dict = {}
        for tensor in request.inputs:
            if tensor.name in inputs:
                _reject("bad_field", f"inputs.{shown(tensor.name)[1:-1]}: given twice")
            inputs[tensor.name] = tensor
        unknown = sorted(set(inputs) - {"user_id", "k"})
        if unknown:
            _reject("unknown_field", f"inputs.{shown(unknown[0])[1:-1]}: unknown input (expected user_id, k)")
        if "user_id" not in inputs:
            _reject("missing_field", "inputs.user_id: required (INT64 or INT32 tensor of user ids)")
        users = _int_vector(inputs["user_id"], "inputs.user_id")
        if len(users) == 0:
            _reject("bad_field", "inputs.user_id: must hold at least one user id")
        if len(users) > self.max_instances:
            _reject("too_many_instances", f"inputs.user_id: {len(users)} users exceed the limit of {self.max_instances}")
        k = DEFAULT_K
        if "k" in inputs:
            values = _int_vector(inputs["k"], "inputs.k")
            if len(values) != 1 or not 1 <= values[0] <= MAX_K:
                _reject("k_out_of_range", f"inputs.k: must be one INT32/INT64 value in 1..{MAX_K}")
            k = int(values[0])
        return {"users": np.asarray(users, dtype=np.int64), "k": k, "id": request.id or str(uuid.uuid4()),
                "from_grpc": request.from_grpc}

    def _answer_v2(self, parsed: dict) -> InferResponse:
        result = self.recommender.recommend(parsed["users"], k=parsed["k"], exclude_rated=True, parallel=False)
        self._count(result.paths)
        scores = np.nan_to_num(result.scores.astype(np.float32), nan=0.0)
        outputs = [InferOutput("movie_ids", list(result.movie_ids.shape), "INT64"),
                   InferOutput("scores", list(scores.shape), "FP32")]
        outputs[0].set_data_from_numpy(result.movie_ids.astype(np.int64), binary_data=False)
        outputs[1].set_data_from_numpy(scores, binary_data=False)
        return InferResponse(response_id=parsed["id"], model_name=self.name, model_version=str(self.version),
                             infer_outputs=outputs, from_grpc=parsed["from_grpc"])

    # ------------------------------------------------------------------ kserve hooks

    async def preprocess(self, payload, headers=None):
        parsed = self._parse_v2(payload) if isinstance(payload, InferRequest) else self._parse_v1(payload)
        request_id = (headers or {}).get("x-request-id")
        if self.payload_logger is not None:
            # Only logged events need an id that pairs request with response.
            request_id = request_id or str(uuid.uuid4())
            body = payload.to_rest() if isinstance(payload, InferRequest) else payload
            self.payload_logger.log("org.kubeflow.serving.inference.request", request_id, body, self._source())
        return {"parsed": parsed, "request_id": request_id}

    def predict(self, payload, headers=None):
        parsed = payload["parsed"]
        answer = self._answer_v2(parsed) if isinstance(parsed, dict) and "users" in parsed else {
            "predictions": self._answer_v1(parsed)}
        return {"answer": answer, "request_id": payload["request_id"]}

    async def postprocess(self, result, headers=None, response=None):
        answer = result["answer"]
        if self.payload_logger is not None:
            body = answer.to_rest() if isinstance(answer, InferResponse) else answer
            self.payload_logger.log("org.kubeflow.serving.inference.response", result["request_id"], body, self._source())
        return answer

    def _source(self) -> str:
        return f"http://localhost/v1/models/{self.name}"
