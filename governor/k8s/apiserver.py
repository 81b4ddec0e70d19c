"""The two Kubernetes API calls govd makes: list the pods on its node (for their `govd.io/policy`
annotation and uid) and create an Event on a pod (to tell its owner about a refused policy).

Plain HTTPS with the service account's token and CA, from the standard library: two REST calls do not
justify the official client and its dependencies. The token is read for every request because
kubelets rotate projected tokens (about hourly).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..errors import GovdError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_REPLY_BYTES = 64 << 20  # a node's pod list; a bound so that a broken server cannot exhaust memory


class ApiError(GovdError):
    """The API server could not be asked, refused, or answered nonsense."""


@dataclass(frozen=True)
class Pod:
    """What govd needs of a pod."""

    namespace: str
    name: str
    uid: str
    phase: str
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiServer:
    """Where the API server is and how to prove who we are."""

    url: str  # https://host:port (in-cluster) or http://127.0.0.1:port (tests, a kubectl proxy)
    token_file: Path | None = None
    ca_file: Path | None = None
    timeout_s: float = 10.0

    @classmethod
    def in_cluster(cls, timeout_s: float = 10.0) -> ApiServer:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ApiError("KUBERNETES_SERVICE_HOST is not set: not in a pod; give the API server with --api-server")
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", SERVICE_ACCOUNT / "token", SERVICE_ACCOUNT / "ca.crt", timeout_s)

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Accept": "application/json"}
        if self.token_file is not None:
            try:
                headers["Authorization"] = "Bearer " + self.token_file.read_text().strip()
            except OSError as exc:
                raise ApiError(f"cannot read the service account token {self.token_file}: {exc.strerror}") from None
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method, headers=headers)
        context = None
        if self.url.startswith("https:"):
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=context) as reply:
                raw = reply.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            detail = _status_message(exc.read(4096))
            raise ApiError(f"{method} {path}: HTTP {exc.code}{': ' + detail if detail else ''}") from None
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            raise ApiError(f"{method} {self.url}{path}: {getattr(exc, 'reason', exc)}") from None
        if len(raw) > MAX_REPLY_BYTES:
            raise ApiError(f"{method} {path}: reply larger than {MAX_REPLY_BYTES >> 20} MiB")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ApiError(f"{method} {path}: the reply is not JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(f"{method} {path}: the reply is not a JSON object")
        return doc

    def pods_on(self, node: str) -> list[Pod]:
        """Every pod scheduled to `node` (a field selector: the API server filters, not us)."""
        query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={node}"})
        doc = self._request("GET", f"/api/v1/pods?{query}")
        items = doc.get("items")
        if not isinstance(items, list):
            raise ApiError("GET /api/v1/pods: the reply has no list of items (not a PodList)")
        pods = []
        for item in items:
            meta = item.get("metadata") if isinstance(item, dict) else None
            if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in ("namespace", "name",
                                                                                           "uid")):
                continue  # not a pod as the API defines one; nothing to run for it
            annotations = meta.get("annotations") or {}
            status = item.get("status") or {}
            pods.append(Pod(meta["namespace"], meta["name"], meta["uid"],
                            status.get("phase", "") if isinstance(status, dict) else "",
                            {k: v for k, v in annotations.items() if isinstance(v, str)}
                            if isinstance(annotations, dict) else {}))
        return pods

    def warn(self, pod: Pod, reason: str, message: str, component: str, node: str) -> None:
        """A Warning Event on the pod, which `kubectl describe pod` shows its owner."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{pod.name[:200]}.govd.", "namespace": pod.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                               "uid": pod.uid},
            "reason": reason, "message": message[:1024], "type": "Warning",
            "source": {"component": component, "host": node},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._request("POST", f"/api/v1/namespaces/{urllib.parse.quote(pod.namespace, safe='')}/events", event)


def _status_message(raw: bytes) -> str:
    """The API server's own words from a Status reply, if it sent one."""
    try:
        doc = json.loads(raw)
        return str(doc.get("message", ""))[:300] if isinstance(doc, dict) else ""
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip()
