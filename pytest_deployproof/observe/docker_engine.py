"""What a host's Docker engine has: networks and images (PRE-1, PRE-7).

Networks are listed once per host. An image is looked for on the host first;
if it is missing and its name says which registry holds it
(``ghcr.io/o/www:sha-...``, ``127.0.0.1:5000/app:v1``), the registry is asked
through the engine (``docker manifest``-style distribution inspect), which is
what a pull would use. A name without a registry host (``nginx:1.27``) means Docker
Hub to the engine; it is looked up only where the host's ``short_image_names`` says
``docker.io``, and then through the engine, which asks its ``registry-mirrors`` first,
exactly as its pull will: the lookup names the mirrors it went through. Otherwise it is
refused with the spelling that opts in (``docker.io/library/nginx:1.27``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import Inconclusive
from ..inventory.model import Host
from ..reach.docker_client import client_for

__all__ = ["HostEngine", "ImageLookup", "PullError", "registry_of", "repository_of"]

log = logging.getLogger(__name__)


class PullError(Exception):
    """An image could not be pulled."""


@dataclass(frozen=True)
class ImageLookup:
    image: str
    found: bool
    where: str  # "host", "registry 127.0.0.1:5000", or why it was not found


def registry_of(image: str) -> str | None:
    """The registry host an image name names explicitly, or ``None`` (implicit Docker Hub)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def _bounded(text: str, limit: int = 300) -> str:
    """A registry's or engine's error text as one bounded line (it goes into history notes)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def repository_of(image: str) -> str:
    """The repository of a reference, without its tag and digest: ``host:5000/app`` of
    ``host:5000/app:v1``, ``nginx`` of ``nginx:1.27@sha256:...`` (a port is not a tag)."""
    from docker.utils import parse_repository_tag  # noqa: PLC0415

    repository, _ = parse_repository_tag(image.split("@", 1)[0])
    return str(repository)


class HostEngine:
    """Cached engine facts of one host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._networks: set[str] | None = None
        self._images: dict[str, ImageLookup] = {}
        self._mirrors: list[str] | None = None  # the engine's registry-mirrors, once asked

    def networks(self) -> set[str]:
        import docker  # noqa: PLC0415

        with self._lock:
            if self._networks is None:
                try:
                    listed = client_for(self.host).api.networks()
                except docker.errors.DockerException as exc:
                    raise Inconclusive(
                        f"cannot list networks on host {self.host.name!r}: {exc}"
                    ) from None
                self._networks = {network["Name"] for network in listed}
            return self._networks

    def image(self, image: str) -> ImageLookup:
        with self._lock:
            if image not in self._images:
                found = self._images[image] = self._lookup(image)
                if found.found:  # a registry it was found in is what a pull will fetch from
                    local = found.where == f"host {self.host.name}"
                    log.log(logging.DEBUG if local else logging.INFO, "image %s: found in %s",
                            image, found.where)  # fmt: skip
            return self._images[image]

    def missing(self, images: Iterable[str]) -> dict[str, str]:
        """The images found neither on the host nor in their registry, each with where it
        was looked for (PRE-7): the rule of the preflight gate and of the deployer."""
        lookups = [self.image(image) for image in dict.fromkeys(images)]
        return {lookup.image: lookup.where for lookup in lookups if not lookup.found}

    def pull(self, image: str) -> None:
        """Pull ``image`` unless the host has it; a failure changes nothing on the host."""
        import docker  # noqa: PLC0415
        import requests  # noqa: PLC0415  (docker-py's transport)

        with self._lock:
            self._images.pop(image, None)
        api = client_for(self.host).api
        try:
            api.inspect_image(image)
            log.debug("host %s has %s: not pulled", self.host.name, image)
            return
        except docker.errors.ImageNotFound:
            pass
        # waiting: the CLI counts the seconds on a terminal (ops/progress.py)
        log.info("host %s: pulling %s", self.host.name, image, extra={"waiting": True})
        # The engine answers 200 and reports a failure met mid-pull (a layer the registry
        # lost: "unknown blob") only in its progress stream: read it to the end. The whole
        # reference goes to docker-py, which splits off a tag or a digest (app@sha256:...)
        # as the engine expects; splitting at the last colon would make a digest a tag.
        failed = ""
        try:
            for event in api.pull(image, stream=True, decode=True):
                failed = failed or str(event.get("error") or "")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            failed = str(exc)
        if failed:
            raise PullError(f"pulling {image} on host {self.host.name} failed: {_bounded(failed)}")

    def identity(self, image: str) -> list[str]:
        """What the image IS, not what it is called: the engine's image id and the registry
        digests it knows; in the registry only, its manifest digest. Empty when unknown."""
        import docker  # noqa: PLC0415
        import requests  # noqa: PLC0415  (docker-py's transport)

        api = client_for(self.host).api
        try:
            attrs = api.inspect_image(image)
            return [attrs["Id"], *attrs.get("RepoDigests", [])]
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise Inconclusive(
                f"cannot inspect {image} on host {self.host.name!r}: {exc}"
            ) from None
        if self._registry(image) is None:
            return []
        try:
            digest = api.inspect_distribution(image)["Descriptor"]["digest"]
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return []  # unknown: what it is is then not recorded, never guessed
        return [f"{repository_of(image)}@{digest}"]

    def inspect(self, container: Any) -> dict[str, Any]:
        """A container's full attributes (one API call): only for a container that drifted."""
        import docker  # noqa: PLC0415

        try:
            return dict(client_for(self.host).api.inspect_container(container.id))
        except docker.errors.DockerException as exc:
            raise Inconclusive(
                f"cannot inspect {container.name} on host {self.host.name!r}: {exc}"
            ) from None

    def exit_code(self, container: str, *, remove: bool = True) -> int | None:
        """The exit code of a stopped container (``None`` if there is no such container),
        then remove it. Compose v2.40 on engine API 1.41 reports 0 from ``compose run``
        whatever the command returned, so a one-off's verdict is read from the engine."""
        import docker  # noqa: PLC0415

        api = client_for(self.host).api
        try:
            state = api.inspect_container(container)["State"]
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise Inconclusive(
                f"cannot inspect {container} on host {self.host.name!r}: {exc}"
            ) from None
        if remove:
            api.remove_container(container, force=True)
        return int(state.get("ExitCode", -1)) if not state.get("Running") else -1

    def _registry(self, image: str) -> str | None:
        """The registry a lookup of ``image`` asks: the one it names, Docker Hub for a short
        name where the host's setting says so, else ``None`` (not looked up)."""
        named = registry_of(image)
        if named is None and self.host.short_image_names == "docker.io":
            return "docker.io"
        return named

    def _registry_label(self, registry: str, api: Any) -> str:
        """``registry docker.io (through mirror http://...)``: where a short name was looked
        for, as the engine resolves it (its registry-mirrors serve Docker Hub names)."""
        if registry != "docker.io":
            return f"registry {registry}"
        if self._mirrors is None:
            try:
                found = (api.info().get("RegistryConfig") or {}).get("Mirrors") or []
                self._mirrors = [str(mirror)[:200] for mirror in found[:5]]
            except Exception:  # the mirrors only explain; the lookup's own answer decides
                self._mirrors = []
        mirrors = self._mirrors
        if not mirrors:
            return "registry docker.io"
        return f"registry docker.io (through the engine's mirror {', '.join(mirrors)})"

    def _lookup(self, image: str) -> ImageLookup:
        import docker  # noqa: PLC0415
        import requests  # noqa: PLC0415  (docker-py's transport)

        api = client_for(self.host).api
        try:
            api.inspect_image(image)
            return ImageLookup(image, True, f"host {self.host.name}")
        except docker.errors.ImageNotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise Inconclusive(f"cannot inspect images on host {self.host.name!r}: {exc}") from None
        registry = self._registry(image)
        if registry is None:
            return ImageLookup(
                image,
                False,
                f"not on host {self.host.name} (a name without a registry host is not looked up "
                "in Docker Hub; write docker.io/... or set the host's short_image_names: "
                "docker.io to allow it)",
            )
        where = self._registry_label(registry, api)
        try:
            api.inspect_distribution(image)
            return ImageLookup(image, True, where)
        except docker.errors.APIError as exc:
            reason = _bounded(exc.explanation or str(exc))
            return ImageLookup(
                image, False, f"not on host {self.host.name}, nor in {where}: {reason}"
            )
        except requests.exceptions.RequestException as exc:
            # the engine did not answer in time (a registry that drops packets outlasts the
            # client's timeout): not an answer either way
            raise Inconclusive(
                f"cannot look up {image} in {where} from host {self.host.name!r}: "
                f"{_bounded(str(exc))}"
            ) from None
