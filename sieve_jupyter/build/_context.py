"""Turn an `Environment` into a Docker build context: a Dockerfile, its files, and a content tag.

Layers go from most to least stable (base, CA bundle, Python, apt, pip, run commands, labels) so
a changed pip list reuses the apt layer. Nothing here depends on user code or secrets: code and
the sieve-jupyter runtime are mounted when a container starts, so editing code never rebuilds.
The same inputs always give byte-identical files, hence the same tag.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sieve_jupyter._errors import ConfigurationError
from sieve_jupyter.build._bases import CPU_BASE_TEMPLATE, GPU_BASE_TEMPLATE, choose_base_image

if TYPE_CHECKING:
    from sieve_jupyter.spec._model import Environment

__all__ = [
    "BUILD_SCHEMA",
    "IPC_MOUNT",
    "LABEL_PREFIX",
    "RUNTIME_MOUNT",
    "SRC_MOUNT",
    "VENV",
    "VENV_PYTHON",
    "BuildContext",
    "installed_pins",
    "BuildOptions",
    "make_build_context",
]

#: Bumped whenever the Dockerfile layout changes, so old images are not mistaken for new ones.
BUILD_SCHEMA = 1
LABEL_PREFIX = "io.sieve-jupyter"
#: Where things live inside an image / container.
VENV = "/opt/sieve/venv"
VENV_PYTHON = f"{VENV}/bin/python"
RUNTIME_MOUNT = "/opt/sieve/lib"  # parent of the read-only sieve_jupyter package
SRC_MOUNT = "/src"  # the notebook's working directory
IPC_MOUNT = "/run/sieve"  # the worker's private socket directory
_ETC = "/etc/sieve"
_CA_PATH = f"{_ETC}/ca-bundle.crt"

_INSTALL_PYTHON = r"""#!/bin/sh
# Make sure python$1 (with venv) exists; install it with apt when the base image lacks it.
set -eu
PY="python$1"
if command -v "$PY" >/dev/null 2>&1 && "$PY" -c "import venv, ensurepip" >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "sieve: the base image has no $PY and no apt-get to install it." \
       "Fix: use a base image that provides Python $1." >&2
  exit 1
fi
apt-get update
if ! apt-cache show "$PY-venv" >/dev/null 2>&1; then
  if grep -qi '^ID=ubuntu' /etc/os-release; then
    # Ubuntu ships one Python per release; deadsnakes carries the others.
    apt-get install -y --no-install-recommends software-properties-common gpg-agent
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update
  else
    echo "sieve: this distribution has no $PY package." \
         "Fix: use a base image that provides Python $1." >&2
    exit 1
  fi
fi
apt-get install -y --no-install-recommends "$PY" "$PY-venv"
rm -rf /var/lib/apt/lists/*
"""


#: What the sieve-jupyter SDK needs besides cloudpickle, so user code in a container can use
#: all of ``sieve`` (``sieve.function.get`` builds specs, which needs pydantic and packaging).
SDK_DEPENDENCIES = ("anyio", "packaging", "pydantic", "PyYAML")
#: Where those live: after the venv's own packages on sys.path, so a user's pins win.
SDK_DEPS_DIR = "/opt/sieve/deps"


def _kernel_cloudpickle() -> str:
    return importlib.metadata.version("cloudpickle")


def installed_pins(names: Sequence[str]) -> tuple[str, ...]:
    """``name==version`` for each of `names` as installed in this process's environment (a
    package that is not installed is left unpinned), so an image gets what the kernel runs."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return tuple(pins)


@dataclass(frozen=True)
class BuildOptions:
    """How images are built, beyond what the environment says. All parts feed the tag.

    Args:
        base_image: an explicit base image for every environment (CPU and GPU alike); it must
            provide ``pythonX.Y`` or apt to install it.
        cpu_base_template: the CPU base, with ``{python}`` (default ``python:{python}-slim``).
        gpu_base_template: the CUDA base, with ``{cuda}``, ``{ubuntu}`` and ``{python}``.
        ca_bundle: a PEM file the image must trust (a proxy that re-signs TLS); it is copied in
            and named by ``PIP_CERT``, ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` and apt's config.
        cloudpickle_version: pinned in the image; defaults to the kernel's, which unpickling the
            kernel's code needs.
        sdk_requirements: the SDK's other dependencies, pinned to the kernel's versions and
            installed apart from the user's packages (whose versions win).
        repository: the image name the content tag is attached to.
    """

    base_image: str | None = None
    cpu_base_template: str = CPU_BASE_TEMPLATE
    gpu_base_template: str = GPU_BASE_TEMPLATE
    ca_bundle: Path | None = None
    cloudpickle_version: str = field(default_factory=_kernel_cloudpickle)
    sdk_requirements: tuple[str, ...] = field(
        default_factory=lambda: installed_pins(SDK_DEPENDENCIES)
    )
    repository: str = "sieve-jupyter-env"


@dataclass(frozen=True)
class BuildContext:
    """The files of one image build, in order, and the tag they hash to.

    Attributes:
        files: path in the context -> bytes; ``Dockerfile`` is one of them.
        tag: ``repository:<hash>``, where the hash covers every file (so, the environment plus
            the build options, and never any code).
        base_image: the ``FROM`` image.
        labels: the labels the Dockerfile sets on the image.
    """

    files: dict[str, bytes]
    tag: str
    base_image: str
    labels: dict[str, str]

    @property
    def dockerfile(self) -> str:
        return self.files["Dockerfile"].decode()

    def tar_bytes(self) -> bytes:
        """The context as an uncompressed tar with fixed owners, modes and times."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(self.files):
                data = self.files[name]
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()


def _label_value(text: str) -> str:
    # LABEL values are double-quoted and undergo $-substitution; escape both.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def make_build_context(
    environment: Environment, options: BuildOptions | None = None
) -> BuildContext:
    """Render the Dockerfile and context files for `environment`.

    Args:
        environment: the spec's environment (Python, apt and pip packages, CUDA, run commands).
        options: base image choice, CA bundle, cloudpickle pin, repository name.

    Raises:
        ConfigurationError: `options.ca_bundle` cannot be read.
        SpecError: the environment's CUDA version is unknown.
    """
    options = options or BuildOptions()
    python = environment.python_version
    base = choose_base_image(
        python,
        environment.cuda_version,
        # the environment's own base (a model.yaml's runtime.image) is the more specific choice
        base_image=environment.base_image or options.base_image,
        cpu_template=options.cpu_base_template,
        gpu_template=options.gpu_base_template,
    )
    files: dict[str, bytes] = {}
    lines = [
        "# Generated by sieve-jupyter. No code and no secrets in here: code is mounted at",
        f"# {SRC_MOUNT} and the sieve-jupyter runtime read-only at {RUNTIME_MOUNT} at run time.",
        f"FROM {base.image}",
        "ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\",
        "    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore",
    ]
    if options.ca_bundle is not None:
        try:
            files["ca-bundle.crt"] = Path(options.ca_bundle).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"docker_ca_bundle: cannot read {options.ca_bundle} ({exc.strerror}). "
                "Fix: point it at a PEM file of the certificates to trust, or unset it."
            ) from exc
        lines += [
            f"COPY ca-bundle.crt {_CA_PATH}",
            f"ENV PIP_CERT={_CA_PATH} SSL_CERT_FILE={_CA_PATH} REQUESTS_CA_BUNDLE={_CA_PATH} \\",
            f"    CURL_CA_BUNDLE={_CA_PATH}",
            "RUN mkdir -p /etc/apt/apt.conf.d && echo "
            f"'Acquire::https::CAInfo \"{_CA_PATH}\";' > /etc/apt/apt.conf.d/99sieve-ca-bundle",
        ]
    if not base.python_preinstalled:
        files["install-python.sh"] = _INSTALL_PYTHON.encode()
        lines += [
            f"COPY install-python.sh {_ETC}/install-python.sh",
            f"RUN sh {_ETC}/install-python.sh {python}",
        ]
    cloudpickle = f"cloudpickle=={options.cloudpickle_version}"
    files["sieve-requirements.txt"] = ("\n".join(options.sdk_requirements) + "\n").encode()
    lines += [
        # --system-site-packages: a base that ships libraries (torch images) keeps them visible.
        f"RUN python{python} -m venv --system-site-packages {VENV}",
        f"ENV VIRTUAL_ENV={VENV} PATH={VENV}/bin:$PATH",
        f"COPY sieve-requirements.txt {_ETC}/sieve-requirements.txt",
        # The SDK's own dependencies go to a folder a .pth file appends after the venv's
        # packages, so they never clash with (and never override) the user's versions.
        f"RUN pip install {cloudpickle} && pip install --target {SDK_DEPS_DIR} "
        f'-r {_ETC}/sieve-requirements.txt && python -c "import site; '
        f"open(site.getsitepackages()[0] + '/zz-sieve-deps.pth', 'w').write('{SDK_DEPS_DIR}')\"",
    ]
    if environment.system_packages:
        packages = " ".join(environment.system_packages)
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{packages} && rm -rf /var/lib/apt/lists/*"
        )
    if environment.python_packages:
        # the cloudpickle pin again, so no user requirement can move it
        requirements = [cloudpickle, *environment.python_packages]
        files["requirements.txt"] = ("\n".join(requirements) + "\n").encode()
        lines += [
            f"COPY requirements.txt {_ETC}/requirements.txt",
            f"RUN pip install -r {_ETC}/requirements.txt",
        ]
    lines += [f"RUN {command}" for command in environment.run_commands]
    labels = {
        f"{LABEL_PREFIX}.schema": str(BUILD_SCHEMA),
        f"{LABEL_PREFIX}.environment": _canonical(environment),
        f"{LABEL_PREFIX}.environment-hash": environment.content_hash(),
        f"{LABEL_PREFIX}.python": python,
        f"{LABEL_PREFIX}.base-image": base.image,
    }
    lines.append("LABEL " + " \\\n      ".join(f"{k}={_label_value(v)}" for k, v in labels.items()))
    lines.append(f"WORKDIR {SRC_MOUNT}")
    files["Dockerfile"] = ("\n".join(lines) + "\n").encode()
    return BuildContext(
        files=files,
        tag=f"{options.repository}:{_digest(files)}",
        base_image=base.image,
        labels=labels,
    )


def _canonical(environment: Environment) -> str:
    return json.dumps(environment.to_dict(), sort_keys=True, separators=(",", ":"))


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:24]
