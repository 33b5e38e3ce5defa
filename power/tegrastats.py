"""tegrastats text -> :class:`Sample`: one parser for every Jetson generation (TX1 to Thor, JetPack 3-7).

A tegrastats line is a bag of independent fields whose order, presence and spelling changed
between releases (see ``shared/reference/jetson.md`` section 5). The parser therefore walks the
line token by token, tries each known field pattern at the current position and keeps whatever
it does not recognise in :attr:`Sample.unknown` instead of failing. Every sampler (tegrastats,
jtop, NVML, /proc) produces the same :class:`Sample`, so the report code never cares where a
number came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from edge.errors import TelemetryError

__all__ = [
    "CpuCore",
    "EngineState",
    "Rail",
    "Sample",
    "TelemetryLog",
    "INPUT_RAILS",
    "CONSTANT_SENSORS",
    "parse_line",
    "parse_log",
    "read_log",
    "split_sessions",
]

# Rails that measure the whole module input; when one is present the others are subsets of it
# (Orin NX/Nano, Xavier NX, TX1/TX2: VDD_IN; Nano: POM_5V_IN; Thor: VIN, unverified).
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
# Sensors that print a constant instead of a measurement (PMIC@100C / PMIC@50C in every sample seen).
CONSTANT_SENSORS = frozenset({"PMIC"})
# tegrastats prints -256C for a thermal zone without a valid reading (CV0/GPU on AGX Orin, JetPack 5).
_INVALID_TEMPERATURE_C = -200.0
# What a Jetson can really report; a field outside its range means the line is not tegrastats
# output (a corrupted or foreign line), so the whole line is refused rather than averaged in.
# Power: the largest module budget is Thor's 130 W; 300 W leaves room without letting a
# corrupted digit (6,016,986 W) through.
_MAX_MHZ = 10_000.0
_MAX_RAIL_MW = 300_000.0
_MAX_MEMORY_MB = 2.0**21  # 2 TB
_TEMPERATURE_RANGE_C = (-60.0, 200.0)
# `tegrastats --logfile` appends, so one file can hold runs days apart: a pause longer than ten minutes
# and than _SESSION_GAP_PERIODS sampling periods, or a clock that jumps back, starts a new session.
_SESSION_GAP_S = 600.0
_SESSION_GAP_PERIODS = 20

_NUM = r"-?\d+(?:\.\d+)?"
_END = r"(?=\s|$)"
_TIMESTAMP = re.compile(r"\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})(?=\s)")
_RAM = re.compile(r"RAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)(kB|MB)\))?" + _END)
_SWAP = re.compile(r"SWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?" + _END)
_IRAM = re.compile(r"IRAM (\d+)/(\d+)kB ?\(lfb (\d+)kB\)" + _END)
_CPU = re.compile(r"CPU \[([^\]]*)\]" + _END)
_CPU_LEGACY = re.compile(r"cpu \[([^\]]*)\]@(\d+)" + _END)  # L4T 28 (TX1): one clock for all cores
_MTS = re.compile(r"MTS fg (\d+)% bg (\d+)%" + _END)
_TEMPERATURE = re.compile(rf"([A-Za-z][\w-]*)@({_NUM})C(?:/({_NUM})C)?" + _END)
# JetPack <= 4 prints bare numbers, 5-6 add "mW", 7.2 adds a third value.
_RAIL = re.compile(r"([A-Za-z][\w]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?" + _END)
_FREQS = r"\[[\d,]*\]|\d+"
_ENGINE = re.compile(
    rf"([A-Z][A-Z0-9_]*) (?:(off)|(\d+)%(?:@({_FREQS}))?|@({_FREQS})|(\d+))" + _END
)
_CORE = re.compile(r"(?:(\d+)%)?(?:@(\d+))?")


@dataclass
class CpuCore:
    """One CPU core: load in percent of its current clock, clock in MHz; offline cores have neither."""

    load_pct: float | None = None
    freq_mhz: float | None = None
    online: bool = True


@dataclass
class EngineState:
    """A fixed-function engine (DLA, PVA, NVENC, VIC, APE...): load and clock when reported."""

    load_pct: float | None = None
    freq_mhz: float | None = None
    online: bool = True


@dataclass
class Rail:
    """A power rail: instantaneous and running-average power in mW (JetPack 7.2 adds a third value)."""

    instant_mw: float
    average_mw: float | None = None
    third_mw: float | None = None


@dataclass
class Sample:
    """One telemetry sample in the schema shared by every sampler.

    ``time_s`` is seconds since the recording started (the report aligns it with the
    benchmark); ``wallclock`` is the timestamp tegrastats printed (JetPack 5+), if any.
    """

    time_s: float = 0.0
    wallclock: datetime | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    swap_used_mb: float | None = None
    swap_total_mb: float | None = None
    swap_cached_mb: float | None = None
    cpus: list[CpuCore] = field(default_factory=list)
    emc_load_pct: float | None = None
    emc_freq_mhz: float | None = None
    gpu_load_pct: float | None = None
    gpu_freq_mhz: float | None = None
    gpu_gpc_freqs_mhz: list[float] = field(default_factory=list)
    engines: dict[str, EngineState] = field(default_factory=dict)
    temperatures_c: dict[str, float] = field(default_factory=dict)
    rails: dict[str, Rail] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    source: str = "tegrastats"

    def total_power_mw(self) -> float | None:
        """Module power: the input rail when the board has one, otherwise the sum of all rails.

        Adding VDD_CPU_GPU_CV to VDD_IN would double count (it is a subset), while AGX Orin and
        AGX Xavier have no input rail, so their rails are summed (what jtop does; it under-reads
        the carrier board).
        """
        for name in INPUT_RAILS:
            if name in self.rails:
                return self.rails[name].instant_mw
        if not self.rails:
            return None
        return float(sum(rail.instant_mw for rail in self.rails.values()))

    def cpu_load_mean_pct(self) -> float | None:
        """Mean load of the online cores that report one."""
        loads = [c.load_pct for c in self.cpus if c.online and c.load_pct is not None]
        return sum(loads) / len(loads) if loads else None

    def cpu_freq_max_mhz(self) -> float | None:
        """Highest clock among the online cores."""
        freqs = [c.freq_mhz for c in self.cpus if c.online and c.freq_mhz is not None]
        return max(freqs) if freqs else None

    def to_dict(self) -> dict:
        """JSON-ready dict (datetime as ISO text)."""
        data = asdict(self)
        data["wallclock"] = self.wallclock.isoformat() if self.wallclock else None
        data["total_power_mw"] = self.total_power_mw()
        return data


@dataclass
class TelemetryLog:
    """Samples parsed from a recording, split into sessions, plus the lines that were not
    tegrastats output. Each session's ``time_s`` counts from its own first sample."""

    samples: list[Sample]
    malformed_lines: list[int] = field(default_factory=list)
    sessions: list[list[Sample]] = field(default_factory=list)

    @property
    def malformed(self) -> int:
        """How many lines were not tegrastats output."""
        return len(self.malformed_lines)


def _freqs(text: str | None) -> list[float]:
    if not text:
        return []
    return [float(f) for f in text.strip("[]").split(",") if f]


def _parse_cores(items: str, sample: Sample, shared_freq: float | None = None) -> None:
    for position, item in enumerate(i.strip() for i in items.split(",")):
        if item == "off":
            sample.cpus.append(CpuCore(online=False))
            continue
        match = _CORE.fullmatch(item)
        if not match or not item:
            sample.unknown.append(f"CPU[{position}]={item}")
            continue
        load, freq = match.groups()
        sample.cpus.append(
            CpuCore(
                load_pct=float(load) if load is not None else None,
                freq_mhz=float(freq) if freq is not None else shared_freq,
            )
        )


def _apply_engine(match: re.Match, sample: Sample) -> None:
    raw, off, load, load_freq, only_freq, bare = match.groups()
    # GR3D_FREQ -> GR3D, EMC_FREQ -> EMC, NVENC0_FREQ -> NVENC0 (legacy L4T 28 already prints GR3D/EMC).
    name = raw[: -len("_FREQ")] if raw.endswith("_FREQ") else raw
    freqs = _freqs(load_freq or only_freq or bare)
    state = EngineState(
        load_pct=float(load) if load is not None else None,
        freq_mhz=max(freqs) if freqs else None,
        online=off is None,
    )
    if name == "GR3D":
        sample.gpu_load_pct = state.load_pct
        sample.gpu_gpc_freqs_mhz.extend(freqs)
        sample.gpu_freq_mhz = max(sample.gpu_gpc_freqs_mhz) if sample.gpu_gpc_freqs_mhz else None
    elif name == "GR3D2":
        # JetPack 5.0.x on Orin: the same GPU load, clock of the second GPC (not a second GPU).
        sample.gpu_gpc_freqs_mhz.extend(freqs)
        sample.gpu_freq_mhz = max(sample.gpu_gpc_freqs_mhz) if sample.gpu_gpc_freqs_mhz else None
        if sample.gpu_load_pct is None:
            sample.gpu_load_pct = state.load_pct
    elif name == "EMC":
        sample.emc_load_pct = state.load_pct
        sample.emc_freq_mhz = state.freq_mhz
    else:
        sample.engines[name] = state


def _apply(kind: str, match: re.Match, sample: Sample) -> None:
    g = match.groups()
    if kind == "ram":
        sample.ram_used_mb, sample.ram_total_mb = float(g[0]), float(g[1])
    elif kind == "swap":
        sample.swap_used_mb, sample.swap_total_mb = float(g[0]), float(g[1])
        sample.swap_cached_mb = float(g[2]) if g[2] is not None else None
    elif kind == "iram":
        sample.engines["IRAM"] = EngineState(load_pct=100.0 * float(g[0]) / float(g[1]) if float(g[1]) else None)
    elif kind == "cpu":
        _parse_cores(g[0], sample)
    elif kind == "cpu_legacy":
        _parse_cores(g[0], sample, shared_freq=float(g[1]))
    elif kind == "mts":
        sample.engines["MTS_FG"] = EngineState(load_pct=float(g[0]))
        sample.engines["MTS_BG"] = EngineState(load_pct=float(g[1]))
    elif kind == "temperature":
        value = float(g[1])
        if value <= _INVALID_TEMPERATURE_C:
            sample.unknown.append(match.group(0))  # kept verbatim: a zone without a valid reading
        else:
            sample.temperatures_c[g[0]] = value
    elif kind == "rail":
        if g[0] != "NC":  # "NC" is an unconnected INA3221 channel (AGX Orin, JetPack 5)
            sample.rails[g[0]] = Rail(float(g[1]), float(g[2]), float(g[3]) if g[3] is not None else None)
    else:
        _apply_engine(match, sample)


# Tried in this order at every position; RAM/SWAP come before rails so "RAM 4722/7844MB" is
# never read as a rail, and rails before engines so "VDD_IN 5000/5000" is not an engine clock.
_FIELDS = (
    ("ram", _RAM),
    ("swap", _SWAP),
    ("iram", _IRAM),
    ("cpu", _CPU),
    ("cpu_legacy", _CPU_LEGACY),
    ("mts", _MTS),
    ("temperature", _TEMPERATURE),
    ("rail", _RAIL),
    ("engine", _ENGINE),
)


def _plausible(sample: Sample) -> bool:
    """Whether every field of ``sample`` is something a Jetson could report."""
    loads = [sample.gpu_load_pct, sample.emc_load_pct]
    clocks = [sample.gpu_freq_mhz, sample.emc_freq_mhz, *sample.gpu_gpc_freqs_mhz]
    for unit in (*sample.cpus, *sample.engines.values()):
        loads.append(unit.load_pct)
        clocks.append(unit.freq_mhz)
    ranges = [(value, 0.0, 100.0) for value in loads] + [(value, 0.0, _MAX_MHZ) for value in clocks]
    ranges += [(value, *_TEMPERATURE_RANGE_C) for value in sample.temperatures_c.values()]
    ranges += [(value, 0.0, _MAX_RAIL_MW) for r in sample.rails.values() for value in (r.instant_mw, r.average_mw, r.third_mw)]
    for used, total in ((sample.ram_used_mb, sample.ram_total_mb), (sample.swap_used_mb, sample.swap_total_mb)):
        ranges += [(total, 0.0, _MAX_MEMORY_MB), (used, 0.0, _MAX_MEMORY_MB if total is None else total)]
    ranges.append((sample.swap_cached_mb, 0.0, _MAX_MEMORY_MB if sample.swap_total_mb is None else sample.swap_total_mb))
    return sample.ram_total_mb != 0.0 and all(value is None or low <= value <= high for value, low, high in ranges)


def parse_line(line: str) -> Sample | None:
    """Parse one tegrastats line; ``None`` when it is not tegrastats output.

    A line counts as tegrastats output when it has a RAM block or a CPU block (every
    generation prints both) and every field is in range (loads 0-100 %, clocks up to 10 GHz,
    rails up to 300 W, used memory within its total, temperatures -60..200 C); a corrupted
    line is refused whole. Unrecognised tokens are kept in ``Sample.unknown``.
    """
    text = line.rstrip("\r\n")
    sample = Sample()
    pos = 0
    stamp = _TIMESTAMP.match(text)
    if stamp:
        try:
            sample.wallclock = datetime.strptime(stamp.group(1), "%m-%d-%Y %H:%M:%S")
        except ValueError:
            sample.unknown.append(stamp.group(1))
        pos = stamp.end()
    seen_anchor = False
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        for kind, pattern in _FIELDS:
            match = pattern.match(text, pos)
            if match:
                _apply(kind, match, sample)
                seen_anchor = seen_anchor or kind in ("ram", "cpu", "cpu_legacy")
                pos = match.end()
                break
        else:
            end = pos
            while end < len(text) and not text[end].isspace():
                end += 1
            sample.unknown.append(text[pos:end])
            pos = end
    return sample if seen_anchor and _plausible(sample) else None


def parse_log(lines: Iterable[str], interval_s: float | None = None) -> TelemetryLog:
    """Parse a recording; lines that are not tegrastats output are counted and skipped.

    Blank lines and ``#`` comments are ignored without counting. Sample times come from
    ``interval_s`` when given, else from the printed timestamps (JetPack 5+; then the log is
    also split into sessions at long pauses), else one second apart (tegrastats' default period).
    """
    log = TelemetryLog(samples=[])
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        sample = parse_line(stripped)
        if sample is None:
            log.malformed_lines.append(number)
            continue
        log.samples.append(sample)
    stamps = [s.wallclock for s in log.samples]
    if interval_s is None and log.samples and all(stamps):
        log.sessions = split_sessions(log.samples)
        for session in log.sessions:
            first = session[0].wallclock
            for sample in session:
                sample.time_s = (sample.wallclock - first).total_seconds()
    else:
        step = 1.0 if interval_s is None else interval_s
        for index, sample in enumerate(log.samples):
            sample.time_s = index * step
        log.sessions = [log.samples] if log.samples else []
    return log


def split_sessions(samples: list[Sample]) -> list[list[Sample]]:
    """Cut timestamped samples where the clock pauses for longer than ten minutes and 20 sampling
    periods (the median step), or jumps back: each piece is one recording session."""
    steps = [(b.wallclock - a.wallclock).total_seconds() for a, b in zip(samples, samples[1:])]
    positive = sorted(step for step in steps if step > 0)
    period = positive[len(positive) // 2] if positive else 1.0
    limit = max(_SESSION_GAP_S, _SESSION_GAP_PERIODS * period)
    sessions = [[samples[0]]]
    for sample, step in zip(samples[1:], steps):
        if step < 0 or step > limit:
            sessions.append([])
        sessions[-1].append(sample)
    return sessions


def read_log(path: str | Path, interval_ms: float | None = None) -> TelemetryLog:
    """Read a tegrastats log file (``tegrastats --logfile`` or redirected stdout).

    Raises:
        TelemetryError: the file is missing or holds no tegrastats line at all.
    """
    path = Path(path)
    if not path.is_file():
        raise TelemetryError(f"tegrastats log '{path}' does not exist")
    with path.open(encoding="utf-8", errors="replace") as handle:
        log = parse_log(handle, interval_s=None if interval_ms is None else interval_ms / 1000.0)
    if not log.samples:
        raise TelemetryError(
            f"'{path}' holds no tegrastats line ({log.malformed} unrecognised lines); expected lines like 'RAM 2257/30536MB ... CPU [...]'"
        )
    return log
