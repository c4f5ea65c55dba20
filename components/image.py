"""The one image every component runs in: the Dockerfile's build, tagged with the package version."""

from reelops.buildinfo import image

IMAGE = image()
