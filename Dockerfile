# Two images from one file (`make image` builds both; see containers/build.py):
#   --target pipeline  every KFP component (TensorFlow included), ghcr.io/reelops/reelops:<version>
#   --target serve     the predictor and the drift detector, no TensorFlow, ghcr.io/reelops/reelops-serve:<version>
# BASE_IMAGE needs python3.11 with venv (python:3.11-slim, or a local Debian bookworm where no
# registry is reachable). Each image is a virtualenv installed with the pins of constraints.txt,
# no test tools, run as a non-root user, and knows the commit it was built from.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV VIRTUAL_ENV=/opt/reelops/venv \
    PATH=/opt/reelops/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN python3 -m venv /opt/reelops/venv

# The library and its serving dependencies; the pipeline stage adds TensorFlow on top.
FROM base AS build-serve
WORKDIR /src
COPY constraints.txt setup.py README.md ./
COPY reelops ./reelops
COPY components ./components
COPY pipelines ./pipelines
ARG GIT_COMMIT=unknown
# setup.py records REELOPS_GIT_COMMIT into reelops/_build_info.py (an image has no .git).
ENV REELOPS_GIT_COMMIT=${GIT_COMMIT}
# pip's cache stays in the build stages (only the venv is copied into an image), and
# containers/build.py mounts it from the host so a rebuild does not download again: DL3042
# (--no-cache-dir) would only make rebuilds slower.
# hadolint ignore=DL3042
RUN pip install --no-compile -c constraints.txt ".[s3]" && reelops --version

FROM build-serve AS build-pipeline
# hadolint ignore=DL3042
RUN pip install --no-compile -c constraints.txt ".[s3,tensorflow]" && python -c "import tensorflow, s3fs"

FROM base AS runtime
ARG REELOPS_VERSION=0.1.0
ARG GIT_COMMIT=unknown
ENV REELOPS_GIT_COMMIT=${GIT_COMMIT} \
    REELOPS_VERSION=${REELOPS_VERSION} \
    HOME=/home/reelops
LABEL org.opencontainers.image.title="reelops" \
      org.opencontainers.image.version="${REELOPS_VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.source="https://github.com/reelops/reelops"
RUN useradd --uid 10001 --create-home --home-dir /home/reelops reelops
WORKDIR /home/reelops
# No ENTRYPOINT: KFP runs components with its own command, and a user runs `reelops ...`.
CMD ["reelops", "--help"]

FROM runtime AS serve
COPY --from=build-serve /opt/reelops/venv /opt/reelops/venv
USER 10001
EXPOSE 8080 8081

FROM runtime AS pipeline
COPY --from=build-pipeline /opt/reelops/venv /opt/reelops/venv
USER 10001
