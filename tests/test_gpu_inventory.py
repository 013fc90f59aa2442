"""Where the list of GPUs comes from, without a GPU: nvidia-smi is a script printing what
the real one prints on a MIG-enabled host, NVML a module answering as pynvml does."""

import sys
import types

import pytest
from traitlets.config import Config

from binderlab.contract import check_gpu_signature, sign_gpus
from binderlab.gpus.inventories import (
    GPUDevice,
    NvidiaSmiGPUInventory,
    NVMLGPUInventory,
    StaticGPUInventory,
    parse_nvidia_smi_list,
)

NVIDIA_SMI_L = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c6b8f2e-0000-1111-2222-333333333333)
  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-0000-1111-2222-333333333333)
  MIG 3g.20gb     Device  1: (UUID: MIG-bbbbbbbb-0000-1111-2222-333333333333)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-7d8e9f00-0000-1111-2222-333333333333)
GPU 2: NVIDIA GeForce RTX 4090 (UUID: GPU-12345678-0000-1111-2222-333333333333)
"""


def test_nvidia_smi_lists_gpus_and_mig_instances():
    devices = parse_nvidia_smi_list(NVIDIA_SMI_L)
    assert [d.id for d in devices] == [
        "MIG-aaaaaaaa-0000-1111-2222-333333333333",
        "MIG-bbbbbbbb-0000-1111-2222-333333333333", "1", "2"]
    assert devices[0].name == "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    assert devices[3].name == "NVIDIA GeForce RTX 4090"


def test_nvidia_smi_inventory_runs_the_command(tmp_path):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + NVIDIA_SMI_L + "EOF\n")
    script.chmod(0o755)
    config = Config()
    config.NvidiaSmiGPUInventory.command = [str(script), "-L"]
    assert len(NvidiaSmiGPUInventory(config=config).list_devices()) == 4


def test_nvidia_smi_missing_means_no_gpus():
    config = Config()
    config.NvidiaSmiGPUInventory.command = ["/nonexistent/nvidia-smi", "-L"]
    assert NvidiaSmiGPUInventory(config=config).list_devices() == []


def test_static_inventory_from_config():
    config = Config()
    config.StaticGPUInventory.devices = ["0", "1"]
    assert StaticGPUInventory(config=config).list_devices() == [
        GPUDevice("0", "GPU 0"), GPUDevice("1", "GPU 1")]


@pytest.fixture
def fake_pynvml(monkeypatch):
    """pynvml's API as NVML answers on a host with one MIG-mode GPU and one plain GPU."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    gpus = [{"name": b"NVIDIA A100", "mig": ["MIG-one", "MIG-two"]},
            {"name": "NVIDIA L4", "mig": None}]
    nvml.NVMLError = NVMLError
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetCount = lambda: len(gpus)
    nvml.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    nvml.nvmlDeviceGetName = lambda h: h["name"]
    nvml.nvmlDeviceGetMigMode = lambda h: (1, 1) if h["mig"] else (0, 0)
    nvml.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7

    def mig_handle(h, m):
        if m >= len(h["mig"]):
            raise NVMLError("not found")
        return h["mig"][m]

    nvml.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    nvml.nvmlDeviceGetUUID = lambda h: h
    monkeypatch.setitem(sys.modules, "pynvml", nvml)


def test_nvml_inventory(fake_pynvml):
    devices = NVMLGPUInventory().list_devices()
    assert [d.id for d in devices] == ["MIG-one", "MIG-two", "1"]
    assert devices[2].name == "NVIDIA L4"


def test_gpu_signature():
    signature = sign_gpus("service-token", "binder-abc", ["0"])
    assert check_gpu_signature("service-token", "binder-abc", ["0"], signature)
    assert not check_gpu_signature("service-token", "binder-abc", ["0", "1"], signature)
    assert not check_gpu_signature("service-token", "binder-other", ["0"], signature)
    assert not check_gpu_signature("", "binder-abc", ["0"], sign_gpus("", "binder-abc", ["0"]))
