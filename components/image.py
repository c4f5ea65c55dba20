"""The images the components and the predictor run in: one constant per Dockerfile target.

``IMAGE`` (target ``pipeline``) runs every component; ``SERVE_IMAGE`` (target ``serve``) the
predictor and the drift detector. ``REELOPS_IMAGE`` / ``REELOPS_SERVE_IMAGE`` override them,
for example with ``IMAGE@sha256:...`` of a pushed build.
"""

from reelops.buildinfo import image, image_id, serve_image

IMAGE = image()
SERVE_IMAGE = serve_image()
# A local build's image id (``make image`` writes it); recorded by the steps as lineage.
IMAGE_ID = image_id()
