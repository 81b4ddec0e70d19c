"""The kubelet's PodResources API (gRPC on /var/lib/kubelet/pod-resources/kubelet.sock): which pod's
container holds which device, as the device plugin named it (a GPU UUID for nvidia.com/gpu).

The messages are the ones govd reads from the upstream `k8s.io/kubelet/pkg/apis/podresources/v1`
api.proto, with the upstream package, names and field numbers, built as descriptors here so that no
generated code or protoc is needed; fields govd does not read (CPU ids, memory, topology, dynamic
resources) are left out and skipped by the parser as unknown fields, which is how protobuf keeps
old readers working against newer kubelets.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GovdError

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
LIST_METHOD = "/v1.PodResourcesLister/List"


class KubeletError(GovdError):
    """The kubelet's PodResources API could not be asked, or answered nonsense."""


def _messages():
    """The message classes, built from a FileDescriptorProto in a pool of their own (package v1)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    string, message = f.TYPE_STRING, f.TYPE_MESSAGE
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(name="govd/podresources/v1/api.proto", package="v1", syntax="proto3")
    shapes = {
        "ListPodResourcesRequest": [],
        "ListPodResourcesResponse": [("pod_resources", 1, message, repeated, ".v1.PodResources")],
        "PodResources": [("name", 1, string, optional, None), ("namespace", 2, string, optional, None),
                         ("containers", 3, message, repeated, ".v1.ContainerResources")],
        "ContainerResources": [("name", 1, string, optional, None),
                               ("devices", 2, message, repeated, ".v1.ContainerDevices")],
        "ContainerDevices": [("resource_name", 1, string, optional, None), ("device_ids", 2, string, repeated, None)],
    }
    for name, fields in shapes.items():
        m = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            fd = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                fd.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{name}")) for name in shapes}


@dataclass(frozen=True)
class ContainerDevices:
    """Devices of one resource held by one container of one pod."""

    namespace: str
    pod: str
    container: str
    resource_name: str
    device_ids: tuple[str, ...]


class PodResourcesClient:
    """A PodResources List client on the kubelet's Unix socket; one channel, reused."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout_s: float = 5.0):
        try:
            import grpc
        except ImportError:
            raise KubeletError("the Kubernetes integration needs grpcio and protobuf: pip install 'govd[kubernetes]'") \
                from None
        self._grpc = grpc
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.messages = _messages()
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._list = self._channel.unary_unary(
            LIST_METHOD, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.messages["ListPodResourcesResponse"].FromString)

    def list(self) -> list[ContainerDevices]:
        """Every container's devices, one entry per (container, resource)."""
        try:
            reply = self._list(self.messages["ListPodResourcesRequest"](), timeout=self.timeout_s)
        except self._grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            raise KubeletError(f"kubelet PodResources List on {self.socket_path} failed: "
                               f"{code.name if code else 'error'}: {detail}") from None
        except Exception as exc:  # noqa: BLE001 - a malformed reply from the socket's owner
            raise KubeletError(f"kubelet PodResources List on {self.socket_path}: unreadable reply: {exc}") from None
        return [ContainerDevices(pod.namespace, pod.name, c.name, d.resource_name, tuple(d.device_ids))
                for pod in reply.pod_resources for c in pod.containers for d in c.devices]

    def close(self) -> None:
        self._channel.close()
