"""A fake kubelet (PodResources gRPC on a Unix socket) and a fake API server (HTTP on 127.0.0.1) for
the Kubernetes tests; both run in threads of the test process and are stopped by the test.

The fake kubelet's messages are written here from the upstream v1 api.proto independently of
governor.k8s.podresources, and carry fields govd does not read (CPU ids, topology, memory), so a
wrong field number or a parser that chokes on newer kubelets fails the tests.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def upstream_messages():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    S, M, I64, U64 = F.TYPE_STRING, F.TYPE_MESSAGE, F.TYPE_INT64, F.TYPE_UINT64
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    shapes = {  # package v1, k8s.io/kubelet/pkg/apis/podresources/v1/api.proto
        "ListPodResourcesRequest": [],
        "ListPodResourcesResponse": [("pod_resources", 1, M, many, "PodResources")],
        "PodResources": [("name", 1, S, one, None), ("namespace", 2, S, one, None),
                         ("containers", 3, M, many, "ContainerResources")],
        "ContainerResources": [("name", 1, S, one, None), ("devices", 2, M, many, "ContainerDevices"),
                               ("cpu_ids", 3, I64, many, None), ("memory", 4, M, many, "ContainerMemory")],
        "ContainerMemory": [("memory_type", 1, S, one, None), ("size", 2, U64, one, None),
                            ("topology", 3, M, one, "TopologyInfo")],
        "TopologyInfo": [("nodes", 1, M, many, "NUMANode")],
        "NUMANode": [("ID", 1, I64, one, None)],
        "ContainerDevices": [("resource_name", 1, S, one, None), ("device_ids", 2, S, many, None),
                             ("topology", 3, M, one, "TopologyInfo")],
    }
    file = descriptor_pb2.FileDescriptorProto(name="test/kubelet/v1/api.proto", package="v1", syntax="proto3")
    for name, fields in shapes.items():
        m = file.message_type.add(name=name)
        for fname, number, kind, label, ref in fields:
            fd = m.field.add(name=fname, number=number, type=kind, label=label)
            if ref:
                fd.type_name = f".v1.{ref}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{n}")) for n in shapes}


@dataclass
class Holding:
    namespace: str
    pod: str
    container: str
    resource: str
    device_ids: list[str]


class FakeKubelet:
    """PodResourcesLister.List on unix://path, answering from `holdings`; `fail` makes it abort."""

    def __init__(self, path: str):
        import grpc

        self.grpc = grpc
        self.path = path
        self.holdings: list[Holding] = []
        self.fail = None  # a grpc.StatusCode to abort with
        self.calls = 0
        self.m = upstream_messages()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler("v1.PodResourcesLister", {
            "List": grpc.unary_unary_rpc_method_handler(
                self._list, request_deserializer=self.m["ListPodResourcesRequest"].FromString,
                response_serializer=lambda r: r.SerializeToString())})
        self.server.add_generic_rpc_handlers((handler,))
        if self.server.add_insecure_port(f"unix://{path}") == 0:
            raise RuntimeError(f"fake kubelet cannot listen on {path}")
        self.server.start()

    def _list(self, request, context):
        self.calls += 1
        if self.fail is not None:
            context.abort(self.fail, "the fake kubelet is told to fail")
        reply = self.m["ListPodResourcesResponse"]()
        pods = {}
        for h in self.holdings:
            key = (h.namespace, h.pod)
            if key not in pods:
                pods[key] = reply.pod_resources.add(name=h.pod, namespace=h.namespace)
            c = pods[key].containers.add(name=h.container, cpu_ids=[2, 3])
            c.memory.add(memory_type="memory", size=1 << 30)
            d = c.devices.add(resource_name=h.resource, device_ids=h.device_ids)
            d.topology.nodes.add(ID=0)
        return reply

    def stop(self) -> None:
        self.server.stop(grace=None).wait(10)


@dataclass
class FakePod:
    namespace: str
    name: str
    uid: str
    node: str
    annotations: dict[str, str] = field(default_factory=dict)
    phase: str = "Running"

    def to_api(self) -> dict:
        return {"metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid,
                             "annotations": self.annotations},
                "spec": {"nodeName": self.node}, "status": {"phase": self.phase}}


class FakeApiServer:
    """GET /api/v1/pods with a spec.nodeName field selector, POST .../events; checks the bearer token.
    `status` other than 200 makes every request fail with it; `garbage` answers non-JSON."""

    def __init__(self, token: str):
        self.token = token
        self.pods: list[FakePod] = []
        self.events: list[dict] = []
        self.requests: list[str] = []
        self.status = 200
        self.garbage = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int, doc) -> None:
                body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _checked(self) -> bool:
                fake.requests.append(f"{self.command} {self.path}")
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._reply(401, {"kind": "Status", "message": "Unauthorized"})
                    return False
                if fake.status != 200:
                    self._reply(fake.status, {"kind": "Status", "message": "the fake is told to fail"})
                    return False
                if fake.garbage:
                    self._reply(200, b"<html>not the API</html>")
                    return False
                return True

            def do_GET(self):
                if not self._checked():
                    return
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/api/v1/pods":
                    self._reply(404, {"kind": "Status", "message": f"no {url.path}"})
                    return
                selector = urllib.parse.parse_qs(url.query).get("fieldSelector", [""])[0]
                if not selector.startswith("spec.nodeName="):
                    self._reply(400, {"kind": "Status", "message": "this fake wants a spec.nodeName selector"})
                    return
                node = selector.split("=", 1)[1]
                self._reply(200, {"kind": "PodList", "apiVersion": "v1",
                                  "items": [p.to_api() for p in fake.pods if p.node == node]})

            def do_POST(self):
                if not self._checked():
                    return
                parts = self.path.split("/")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if len(parts) != 6 or parts[1:4] != ["api", "v1", "namespaces"] or parts[5] != "events" \
                        or body.get("metadata", {}).get("namespace") != parts[4]:
                    self._reply(400, {"kind": "Status", "message": f"bad event path {self.path}"})
                    return
                fake.events.append(body)
                self._reply(201, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
