"""originals.json under concurrent use: every GPU's settings on disk before its first write."""

import threading
import time
from types import SimpleNamespace

import governor.originals as originals_module
from governor.originals import OriginalsFile
from governor.settings import DeviceSettings


class FakeGpu:
    def __init__(self, i):
        self.info = SimpleNamespace(uuid=f"GPU-{i:04d}", index=i)
        self.watts = 300.0 + i

    def read_settings(self):
        return DeviceSettings(power_limit_w=self.watts)

    def restore_handle(self):
        return {"uuid": self.info.uuid}


def test_gpus_saving_together_are_each_on_disk_when_save_returns_and_share_writes(tmp_path, monkeypatch):
    real_write = originals_module.write_text_atomic
    writes = []

    def slow_write(path, text):  # a disk whose fsync takes 20 ms
        writes.append(text)
        time.sleep(0.02)
        real_write(path, text)

    monkeypatch.setattr(originals_module, "write_text_atomic", slow_write)
    orig = OriginalsFile(tmp_path / "originals.json")
    gpus = [FakeGpu(i) for i in range(16)]
    start = threading.Barrier(len(gpus))
    missing = []

    def first_write(gpu):
        start.wait()
        assert orig.save_once(gpu)
        on_disk = OriginalsFile.read(orig.path)["gpus"]
        if gpu.info.uuid not in on_disk:
            missing.append(gpu.info.uuid)

    threads = [threading.Thread(target=first_write, args=(g,)) for g in gpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not missing  # no save_once returned before its GPU was on disk
    on_disk = OriginalsFile.read(orig.path)["gpus"]
    assert sorted(on_disk) == sorted(g.info.uuid for g in gpus)
    assert on_disk["GPU-0003"]["settings"]["power_limit_w"] == 303.0
    assert sorted(e["order"] for e in on_disk.values()) == list(range(16))
    assert len(writes) < len(gpus)  # GPUs that arrived during a write shared the next one
    line = [x for x in orig.path.read_text().splitlines() if "GPU-0003" in x]
    assert len(line) == 1 and '"power_limit_w": 303.0' in line[0]  # one line per GPU: grep its uuid
    assert not orig.save_once(gpus[0])  # saved once: the first settings stay
    assert len(OriginalsFile.read(orig.path)["gpus"]) == 16


def test_forgetting_the_last_gpu_removes_the_file_and_a_later_save_writes_it_anew(tmp_path):
    orig = OriginalsFile(tmp_path / "originals.json")
    a, b = FakeGpu(0), FakeGpu(1)
    orig.save_once(a)
    orig.save_once(b)
    orig.forget(a.info.uuid)
    assert list(OriginalsFile.read(orig.path)["gpus"]) == [b.info.uuid]
    orig.forget(b.info.uuid)
    assert not orig.path.exists()
    orig.forget(b.info.uuid)  # nothing left: no write, no error
    assert not orig.path.exists()
    b.watts = 250.0  # settings changed after govd handed the GPU back: those are the originals now
    assert orig.save_once(b)
    assert OriginalsFile.read(orig.path)["gpus"][b.info.uuid]["settings"]["power_limit_w"] == 250.0


def test_save_all_puts_every_gpu_on_disk_in_one_write_and_skips_those_it_cannot_read(tmp_path, monkeypatch):
    from governor.errors import DeviceError

    real_write = originals_module.write_text_atomic
    writes = []
    monkeypatch.setattr(originals_module, "write_text_atomic", lambda p, t: (writes.append(t), real_write(p, t)))

    class Unreadable(FakeGpu):
        def read_settings(self):
            raise DeviceError("GPU 7: read power limit: Unknown Error")

    orig = OriginalsFile(tmp_path / "originals.json")
    gpus = [FakeGpu(i) for i in range(7)] + [Unreadable(7)]
    unread = orig.save_all(gpus)
    assert list(unread) == ["GPU-0007"] and "Unknown Error" in unread["GPU-0007"]
    assert len(writes) == 1
    on_disk = OriginalsFile.read(orig.path)["gpus"]
    assert sorted(on_disk) == [f"GPU-{i:04d}" for i in range(7)]
    assert not orig.save_once(gpus[3]) and len(writes) == 1  # already on disk: no second write
    gpus[7] = FakeGpu(7)  # readable again: saved at its first write
    assert orig.save_once(gpus[7]) and len(writes) == 2


def test_a_gpu_already_on_disk_never_waits_for_another_gpus_write(tmp_path, monkeypatch):
    """Its first write goes ahead while another GPU's originals are still being written."""
    real_write = originals_module.write_text_atomic
    in_write, release = threading.Event(), threading.Event()

    def stuck_write(path, text):  # the second write hangs until released (a slow disk)
        if "GPU-0001" in text:
            in_write.set()
            release.wait(10)
        real_write(path, text)

    monkeypatch.setattr(originals_module, "write_text_atomic", stuck_write)
    orig = OriginalsFile(tmp_path / "originals.json")
    a, b = FakeGpu(0), FakeGpu(1)
    orig.save_all([a])
    other = threading.Thread(target=orig.save_once, args=(b,))
    other.start()
    assert in_write.wait(10)
    done = threading.Event()
    threading.Thread(target=lambda: (orig.save_once(a), done.set()), daemon=True).start()
    finished_during_write = done.wait(5)
    release.set()
    other.join(10)
    assert finished_during_write
    assert sorted(OriginalsFile.read(orig.path)["gpus"]) == ["GPU-0000", "GPU-0001"]


def test_gpus_forgotten_together_leave_the_file_in_one_write_at_the_end(tmp_path, monkeypatch):
    real_write = originals_module.write_text_atomic
    writes = []
    monkeypatch.setattr(originals_module, "write_text_atomic", lambda p, t: (writes.append(t), real_write(p, t)))
    orig = OriginalsFile(tmp_path / "originals.json")
    gpus = [FakeGpu(i) for i in range(4)]
    orig.save_all(gpus)
    with orig.forgetting_together():
        for g in gpus[:3]:
            orig.forget(g.info.uuid)
        assert len(OriginalsFile.read(orig.path)["gpus"]) == 4  # restored GPUs are still listed until the end
        assert orig.saved(gpus[0].info.uuid) is None
    assert len(writes) == 2 and list(OriginalsFile.read(orig.path)["gpus"]) == ["GPU-0003"]
    with orig.forgetting_together():
        orig.forget("GPU-0003")
    assert not orig.path.exists()
