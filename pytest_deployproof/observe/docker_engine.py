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

__all__ = ["HostEngine", "ImageLookup", "PullError", "registry_of"]

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


class HostEngine:
    """Cached engine facts of one host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._networks: set[str] | None = None
        self._images: dict[str, ImageLookup] = {}

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
                if found.found:  # where it was found is what a pull will fetch from
                    log.info("image %s: found in %s", image, found.where)
            return self._images[image]

    def missing(self, images: Iterable[str]) -> dict[str, str]:
        """The images found neither on the host nor in their registry, each with where it
        was looked for (PRE-7): the rule of the preflight gate and of the deployer."""
        lookups = [self.image(image) for image in dict.fromkeys(images)]
        return {lookup.image: lookup.where for lookup in lookups if not lookup.found}

    def pull(self, image: str) -> None:
        """Pull ``image`` unless the host has it; a failure changes nothing on the host."""
        import docker  # noqa: PLC0415

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
        name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
        # The engine answers 200 and reports a failure met mid-pull (a layer the registry
        # lost: "unknown blob") only in its progress stream: read it to the end.
        failed = ""
        try:
            for event in api.pull(name, tag=tag or None, stream=True, decode=True):
                failed = failed or str(event.get("error") or "")
        except docker.errors.DockerException as exc:
            failed = str(exc)
        if failed:
            raise PullError(f"pulling {image} on host {self.host.name} failed: {failed}")

    def identity(self, image: str) -> list[str]:
        """What the image IS, not what it is called: the engine's image id and the registry
        digests it knows; in the registry only, its manifest digest. Empty when unknown."""
        import docker  # noqa: PLC0415

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
        except docker.errors.APIError:
            return []
        return [f"{image.rsplit(':', 1)[0]}@{digest}"]

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
        try:
            mirrors = (api.info().get("RegistryConfig") or {}).get("Mirrors") or []
        except Exception:  # the mirrors only explain; the lookup's own answer decides
            mirrors = []
        if not mirrors:
            return "registry docker.io"
        return f"registry docker.io (through the engine's mirror {', '.join(mirrors)})"

    def _lookup(self, image: str) -> ImageLookup:
        import docker  # noqa: PLC0415

        api = client_for(self.host).api
        try:
            api.inspect_image(image)
            return ImageLookup(image, True, f"host {self.host.name}")
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
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
        try:
            api.inspect_distribution(image)
            return ImageLookup(image, True, self._registry_label(registry, api))
        except docker.errors.APIError as exc:
            reason = exc.explanation or str(exc)
            where = self._registry_label(registry, api)
            return ImageLookup(
                image, False, f"not on host {self.host.name}, nor in {where}: {reason}"
            )
