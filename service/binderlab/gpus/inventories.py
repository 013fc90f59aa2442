"""Where the list of GPUs comes from: inventories, chosen by entry point
(group ``binderlab.gpu_inventories``: static, nvidia-smi, nvml). ``list_devices()`` runs
once, at start-up; the allocator hands out what it returns."""

import shutil
import subprocess
from dataclasses import dataclass

from traitlets import List, Unicode
from traitlets.config import LoggingConfigurable


@dataclass(frozen=True)
class GPUDevice:
    id: str  # what Docker's device_requests takes: an index, a GPU UUID or a MIG UUID
    name: str


class GPUInventory(LoggingConfigurable):
    """The devices sessions can get. ``list_devices()`` is called once, at start-up."""

    def list_devices(self) -> list[GPUDevice]:
        raise NotImplementedError


class StaticGPUInventory(GPUInventory):
    devices = List(
        Unicode(),
        help="""Device IDs as Docker's device_requests take them (indexes "0", "1", GPU or MIG
        UUIDs). For tests, and for hosts where discovery is not wanted.""",
    ).tag(config=True)

    def list_devices(self) -> list[GPUDevice]:
        return [GPUDevice(d, f"GPU {d}") for d in self.devices]


class NvidiaSmiGPUInventory(GPUInventory):
    """GPUs from `nvidia-smi -L`; a GPU in MIG mode is listed as its MIG instances."""

    command = List(Unicode(), default_value=["nvidia-smi", "-L"],
                   help="The command listing GPUs (default: nvidia-smi -L).").tag(config=True)

    def list_devices(self) -> list[GPUDevice]:
        if not shutil.which(self.command[0]):
            self.log.info("%s not found: no GPUs", self.command[0])
            return []
        out = subprocess.run(self.command, capture_output=True, text=True, timeout=30)
        if out.returncode:
            self.log.warning("%s failed: %s", " ".join(self.command), out.stderr.strip())
            return []
        return parse_nvidia_smi_list(out.stdout)


class NVMLGPUInventory(GPUInventory):
    """GPUs from NVML (the nvidia-ml-py package); MIG instances listed on their own."""

    def list_devices(self) -> list[GPUDevice]:
        try:
            import pynvml
        except ImportError:
            raise RuntimeError("The NVML inventory needs nvidia-ml-py: pip install "
                               "nvidia-ml-py") from None
        pynvml.nvmlInit()
        try:
            devices = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = _text(pynvml.nvmlDeviceGetName(handle))
                migs = []
                try:
                    current, _ = pynvml.nvmlDeviceGetMigMode(handle)
                except pynvml.NVMLError:
                    current = 0
                if current:
                    for m in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
                        try:
                            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, m)
                        except pynvml.NVMLError:
                            continue
                        migs.append(GPUDevice(_text(pynvml.nvmlDeviceGetUUID(mig)),
                                              f"{name} MIG {m}"))
                devices.extend(migs or [GPUDevice(str(i), name)])
            return devices
        finally:
            pynvml.nvmlShutdown()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_nvidia_smi_list(text: str) -> list[GPUDevice]:
    """Parse `nvidia-smi -L`:
    GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c...)
      MIG 1g.5gb      Device  0: (UUID: MIG-7a...)
    """
    devices: list[GPUDevice] = []
    current: tuple[str, str] | None = None
    migs: list[GPUDevice] = []

    def flush():
        if current:
            devices.extend(migs or [GPUDevice(current[0], current[1])])

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("GPU "):
            flush()
            index, _, rest = stripped[4:].partition(":")
            current, migs = (index.strip(), rest.split("(UUID:")[0].strip()), []
        elif stripped.startswith("MIG ") and "(UUID:" in stripped and current:
            uuid = stripped.split("(UUID:")[1].strip(" )")
            profile = stripped[4:].split()[0]
            migs.append(GPUDevice(uuid, f"{current[1]} MIG {profile}"))
    flush()
    return devices
