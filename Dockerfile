# One image for every reelops component, the predictor and the drift detector.
# Build: docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t ghcr.io/reelops/reelops:0.1.0 .
# The tag is the package version (reelops/__init__.py); reelops.buildinfo.image() names it.
FROM python:3.11-slim

ARG REELOPS_VERSION=0.1.0
ARG GIT_COMMIT=unknown
ENV REELOPS_GIT_COMMIT=${GIT_COMMIT} \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

LABEL org.opencontainers.image.title="reelops" \
      org.opencontainers.image.version="${REELOPS_VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}"

WORKDIR /opt/reelops
# Dependencies first (the layer is reused while constraints.txt stays the same).
COPY constraints.txt ./
RUN pip install -r constraints.txt

COPY setup.py README.md ./
COPY reelops ./reelops
COPY components ./components
COPY pipelines ./pipelines
# setup.py records REELOPS_GIT_COMMIT into reelops/_build_info.py.
RUN pip install -c constraints.txt --no-deps . && reelops --version

ENTRYPOINT ["reelops"]
