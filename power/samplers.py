"""Live telemetry samplers behind one interface, each collecting :class:`Sample` in a background thread.

* :class:`TegrastatsSampler` runs ``tegrastats --interval MS`` and parses its stdout (Jetson).
* :class:`JtopSampler` reads jetson-stats' service (Jetson with ``jtop`` installed; imported lazily).
* :class:`NvmlSampler` polls NVML through nvidia-ml-py (desktop / server GPUs), plus host CPU/RAM.
* :class:`PsutilSampler` polls /proc through psutil (any machine; CPU, RAM, temperatures).

All sample times are seconds since a shared reference (``time.perf_counter()`` value given to
:meth:`Sampler.start`), so they line up with a benchmark timed on the same clock.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from typing import IO

from edge.errors import TelemetryError
from edge.power.tegrastats import CpuCore, EngineState, Rail, Sample, parse_line

__all__ = [
    "Sampler",
    "TegrastatsSampler",
    "JtopSampler",
    "NvmlSampler",
    "PsutilSampler",
    "SAMPLERS",
    "make_sampler",
]

# How long stop() waits for a sampler thread (or the tegrastats child) before giving up on it.
_STOP_TIMEOUT_S = 5.0


class Sampler(ABC):
    """Collects samples every ``interval_ms`` in a daemon thread between :meth:`start` and :meth:`stop`."""

    name = "sampler"

    def __init__(self, interval_ms: int = 100) -> None:
        if interval_ms <= 0:
            raise TelemetryError(f"sampling interval must be positive, got {interval_ms} ms")
        self.interval_ms = int(interval_ms)
        self.t0 = 0.0
        self.malformed = 0
        self.error: str | None = None
        self._samples: list[Sample] | deque[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    @abstractmethod
    def available(cls) -> bool:
        """Whether this sampler can run on this machine."""

    @abstractmethod
    def _collect(self) -> None:
        """Thread body: append samples via :meth:`_add` until ``self._stop`` is set."""

    def _prepare(self) -> None:
        """Acquire resources before the thread starts (raise TelemetryError to refuse)."""

    def _release(self) -> None:
        """Release resources after the thread has stopped."""

    def _add(self, sample: Sample) -> None:
        sample.time_s = time.perf_counter() - self.t0
        sample.source = self.name
        with self._lock:
            self._samples.append(sample)

    def _body(self) -> None:
        try:
            self._collect()
        except Exception as exc:  # a sampler failing must not take the benchmark down with it
            self.error = f"{type(exc).__name__}: {exc}"

    @property
    def samples(self) -> list[Sample]:
        """A copy of the samples collected so far."""
        with self._lock:
            return list(self._samples)

    @property
    def latest(self) -> Sample | None:
        """The newest sample, None before the first one."""
        with self._lock:
            return self._samples[-1] if self._samples else None

    def keep_last(self, count: int) -> Sampler:
        """Keep only the newest ``count`` samples: a server samples for days, a benchmark keeps all."""
        with self._lock:
            self._samples = deque(self._samples, maxlen=count)
        return self

    def start(self, t0: float | None = None) -> Sampler:
        """Start sampling; ``t0`` is the ``time.perf_counter()`` value that sample times count from."""
        self.t0 = time.perf_counter() if t0 is None else t0
        self._stop.clear()
        self._prepare()
        self._thread = threading.Thread(target=self._body, name=f"edgetrt-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop sampling and return every sample collected."""
        self._stop.set()
        try:
            self._interrupt()
        finally:
            if self._thread is not None:
                self._thread.join(_STOP_TIMEOUT_S)
            self._release()
        return self.samples

    def _interrupt(self) -> None:
        """Wake a thread blocked on I/O (the stop event wakes the polling samplers)."""

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TegrastatsSampler(Sampler):
    """Runs ``tegrastats --interval MS`` and parses each stdout line as it arrives.

    The child is read line by line in the sampler thread and killed on stop, which also ends a
    blocked read (a reader that waits forever on tegrastats was reported to hang on Orin Nano).
    Raw lines can be copied to ``logfile`` for ``edgetrt telemetry report`` later.
    """

    name = "tegrastats"

    def __init__(self, interval_ms: int = 100, executable: str = "tegrastats", logfile: Path | None = None) -> None:
        super().__init__(interval_ms)
        self.executable = executable
        self.logfile = logfile
        self._process: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    @classmethod
    def available(cls) -> bool:
        return shutil.which("tegrastats") is not None

    def _prepare(self) -> None:
        binary = shutil.which(self.executable)
        if binary is None:
            raise TelemetryError(f"'{self.executable}' not found on PATH (it ships with L4T on Jetson)")
        if self.logfile is not None:
            self._log = open(self.logfile, "w", encoding="utf-8")  # noqa: SIM115 - closed in _release
        self._process = subprocess.Popen(
            [binary, "--interval", str(self.interval_ms)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def _collect(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if self._stop.is_set():
                break
            if self._log is not None:
                self._log.write(line)
            sample = parse_line(line)
            if sample is None:
                self.malformed += 1
            else:
                self._add(sample)

    def _interrupt(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _release(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


def _host_sample() -> Sample:
    """CPU load/clock per core, RAM, swap and temperatures from psutil."""
    import psutil

    sample = Sample()
    loads = psutil.cpu_percent(percpu=True)
    freqs = psutil.cpu_freq(percpu=True) or []
    for index, load in enumerate(loads):
        freq = freqs[index].current if index < len(freqs) else (freqs[0].current if len(freqs) == 1 else None)
        sample.cpus.append(CpuCore(load_pct=float(load), freq_mhz=float(freq) if freq else None))
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    sample.ram_used_mb = (memory.total - memory.available) / 2**20
    sample.ram_total_mb = memory.total / 2**20
    sample.swap_used_mb, sample.swap_total_mb = swap.used / 2**20, swap.total / 2**20
    readings = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    for chip, entries in readings.items():
        for position, entry in enumerate(entries):
            label = entry.label or (chip if len(entries) == 1 else f"{chip}{position}")
            sample.temperatures_c[label] = float(entry.current)
    return sample


def _prime_host() -> None:
    """Prime psutil's CPU counters: the first ``cpu_percent`` call has no interval to measure."""
    import psutil

    psutil.cpu_percent(percpu=True)


class PsutilSampler(Sampler):
    """Host CPU, RAM and temperatures through psutil (no power rails on a plain CPU host)."""

    name = "psutil"

    @classmethod
    def available(cls) -> bool:
        try:
            import psutil  # noqa: F401
        except ImportError:
            return False
        return True

    def _prepare(self) -> None:
        if not self.available():
            raise TelemetryError("psutil is not installed (pip install 'edgetrt[telemetry]')")
        _prime_host()

    def _collect(self) -> None:
        while not self._stop.wait(self.interval_ms / 1000.0):
            self._add(_host_sample())


class NvmlSampler(Sampler):
    """GPU load, SM/memory clocks, board power and temperature through NVML, plus host CPU/RAM."""

    name = "nvml"

    def __init__(self, interval_ms: int = 100, device: int = 0) -> None:
        super().__init__(interval_ms)
        self.device = device
        self._handle = None
        self._with_host = False  # psutil present: each sample adds host CPU/RAM (decided once, in _prepare)

    @classmethod
    def available(cls) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # ImportError, or NVMLError when no driver / no GPU
            return False
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()

    def _prepare(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.device)
        except Exception as exc:
            raise TelemetryError(f"NVML is not usable for GPU {self.device}: {exc}") from None
        self._with_host = PsutilSampler.available()
        if self._with_host:
            _prime_host()

    def _gpu_sample(self) -> Sample:
        import pynvml

        handle = self._handle
        sample = _host_sample() if self._with_host else Sample()
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
        sample.gpu_load_pct, sample.emc_load_pct = float(util.gpu), float(util.memory)
        sample.gpu_freq_mhz = float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
        sample.gpu_gpc_freqs_mhz = [sample.gpu_freq_mhz]
        sample.emc_freq_mhz = float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM))
        sample.temperatures_c["gpu"] = float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        try:
            sample.rails["GPU"] = Rail(instant_mw=float(pynvml.nvmlDeviceGetPowerUsage(handle)))
        except pynvml.NVMLError:
            pass  # some boards do not report power
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        sample.engines["GPU_MEM"] = EngineState(load_pct=100.0 * memory.used / memory.total if memory.total else None)
        try:
            reasons = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
        except pynvml.NVMLError:
            reasons = 0
        throttling = reasons & ~(pynvml.nvmlClocksThrottleReasonGpuIdle | pynvml.nvmlClocksThrottleReasonApplicationsClocksSetting)
        if throttling:
            sample.unknown.append(f"nvml_throttle_reasons=0x{throttling:x}")
        return sample

    def _collect(self) -> None:
        while not self._stop.wait(self.interval_ms / 1000.0):
            self._add(self._gpu_sample())

    def _release(self) -> None:
        if self._handle is not None:
            import pynvml

            pynvml.nvmlShutdown()
            self._handle = None


class JtopSampler(Sampler):
    """Reads the jetson-stats service (``jtop``); its rails include the running average."""

    name = "jtop"

    @classmethod
    def available(cls) -> bool:
        try:
            from jtop import jtop  # noqa: F401
        except ImportError:
            return False
        return Path("/run/jtop.sock").exists()

    def _collect(self) -> None:
        from jtop import jtop

        with jtop(interval=self.interval_ms / 1000.0) as jetson:
            while not self._stop.is_set() and jetson.ok():
                self._add(_jtop_sample(jetson.stats, jetson.power))


def _jtop_sample(stats: dict, power: dict) -> Sample:
    """Convert jtop's flat ``stats`` dict and ``power`` dict into a :class:`Sample`."""
    sample = Sample()
    index = 1
    while f"CPU{index}" in stats:
        value = stats[f"CPU{index}"]
        sample.cpus.append(CpuCore(online=False) if value == "OFF" else CpuCore(load_pct=float(value)))
        index += 1
    if isinstance(stats.get("GPU"), (int, float)):
        sample.gpu_load_pct = float(stats["GPU"])
    if isinstance(stats.get("EMC"), (int, float)):
        sample.emc_load_pct = float(stats["EMC"])
    for key, value in stats.items():
        if key.startswith("Temp ") and isinstance(value, (int, float)):
            sample.temperatures_c[key[len("Temp ") :]] = float(value)
    for name, rail in (power or {}).get("rail", {}).items():
        sample.rails[name] = Rail(instant_mw=float(rail.get("power", 0.0)), average_mw=rail.get("avg"))
    return sample


SAMPLERS: dict[str, type[Sampler]] = {
    "tegrastats": TegrastatsSampler,
    "jtop": JtopSampler,
    "nvml": NvmlSampler,
    "psutil": PsutilSampler,
}


def make_sampler(kind: str = "auto", interval_ms: int = 100) -> Sampler:
    """The sampler named ``kind``, or for ``auto`` the first available of tegrastats, jtop, NVML, psutil."""
    if kind == "auto":
        for candidate in SAMPLERS.values():
            if candidate.available():
                return candidate(interval_ms=interval_ms)
        raise TelemetryError("no telemetry source: no tegrastats, jtop, NVML GPU or psutil on this machine")
    if kind not in SAMPLERS:
        raise TelemetryError(f"unknown sampler '{kind}'; choose one of auto, {', '.join(SAMPLERS)}")
    sampler = SAMPLERS[kind]
    if not sampler.available():
        raise TelemetryError(f"sampler '{kind}' is not available on this machine")
    return sampler(interval_ms=interval_ms)
