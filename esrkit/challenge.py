"""What each NTIRE ESR challenge year decided (``OFFICIAL_KITS.md`` in the shared material): the FLOPs
counter, the dataset layout, the PSNR bars, the baseline, and the packages of its official environment.

:class:`Convention` is how a run's results are written: the year's FLOPs counter under ``flops``
(the other counter beside it), and entries keyed as the organisers key them (``00_EFDN_baseline``
for the year's baseline, ``NN_Name`` for team NN). A run on an official layout follows that layout's
years by default; ``--year`` names one; elsewhere (benchmark sets, folders, the demo) the kit keys by
its own ids and reports the 2022-2023 hook counter under ``flops``, as Table 3 of the MLRN paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from esrkit.entry import Entry
from esrkit.errors import KitError
from esrkit.names import safe_name

HOOKS, FVCORE = "official", "fvcore"

# Import names of the packages in the 2024 kit's requirements.txt (Amazingren/NTIRE2024_ESR; the 2025 kit
# pins the same environment): what a 2024/2025 submission could import on the organisers' machine.
ENVIRONMENT_2024 = frozenset({
    "absl", "anyio", "appdirs", "beartype", "blessed", "brotli", "cachetools", "certifi", "cffi",
    "charset_normalizer", "click", "clip", "cmake", "contourpy", "cryptography", "cycler", "dockerpycreds",
    "einops", "ema_pytorch", "exceptiongroup", "filelock", "fontTools", "fsspec", "ftfy", "fvcore", "gitdb", "git",
    "google", "google_auth_oauthlib", "gpustat", "grpc", "h11", "h5py", "huggingface_hub", "idna", "imageio",
    "importlib_metadata", "importlib_resources", "iopath", "itsdangerous", "kiwisolver", "lit", "lpips", "markdown",
    "markdown_it", "markupsafe", "matplotlib", "mdurl", "mkl", "mkl_fft", "mkl_random", "mpmath", "multidict",
    "networkx", "numpy", "pynvml", "oauthlib", "cv2", "ordered_set", "orjson", "packaging", "pandas", "pathtools",
    "PIL", "portalocker", "psutil", "cpuinfo", "pyasn1", "pyasn1_modules", "pycparser", "pydantic", "pygments",
    "jwt", "OpenSSL", "pyparsing", "socks", "dateutil", "pytorch_fid", "pytz", "pywt", "yaml", "readchar", "regex",
    "requests", "requests_oauthlib", "rfc3986", "rich", "rsa", "skimage", "skvideo", "scipy", "seaborn",
    "sentry_sdk", "setproctitle", "six", "smmap", "sniffio", "soupsieve", "starlette", "starsessions", "sympy",
    "tabulate", "tbb", "tensorboard", "termcolor", "tifffile", "timm", "torch", "torchaudio", "torchmetrics",
    "torchsummary", "torchvision", "tqdm", "triton", "tsnecuda", "typing_extensions", "ujson", "urllib3",
    "uvicorn", "uvloop", "wandb", "warmup_scheduler", "watchfiles", "wcwidth", "websocket", "websockets",
    "werkzeug", "yacs", "yapf", "yarl", "zipp",
})
# The 2022 and 2023 kits publish no environment: torch and numpy are what every submission may assume.
ENVIRONMENT_2022 = frozenset({"torch", "numpy"})


@dataclass(frozen=True)
class Year:
    """One challenge year's conventions."""

    year: int
    flops_counter: str  # HOOKS (model_summary hooks, 2022-2023) or FVCORE (2024-2025)
    layout: str  # the dataset layout the bars are measured on
    bars: Mapping[str, float]  # split -> PSNR bar [dB]
    set_sizes: Mapping[str, int]  # split -> images in the full set the bar is defined on
    sets: str
    baseline: str  # the registered entry the year compares with
    environment: frozenset[str]
    environment_source: str

    def describe(self) -> str:
        bars = " / ".join(f"{b:.2f} dB {s}" for s, b in self.bars.items())
        counter = "the official hook counter" if self.flops_counter == HOOKS else "fvcore"
        return f"NTIRE {self.year} rules: FLOPs by {counter}; PSNR bar {bars} on {self.sets}"


_DIV2K = {"valid": 100}
_DIV2K_LSDIR = {"valid": 200, "test": 200}
YEARS: dict[int, Year] = {
    2022: Year(2022, HOOKS, "ntire2023", {"valid": 29.00}, _DIV2K, "DIV2K valid (100 images)", "IMDN",
               ENVIRONMENT_2022, "torch and numpy (the 2022 kit publishes no environment)"),
    2023: Year(2023, HOOKS, "ntire2023", {"valid": 29.00}, _DIV2K, "DIV2K valid (100 images)", "RFDN",
               ENVIRONMENT_2022, "torch and numpy (the 2023 kit publishes no environment)"),
    2024: Year(2024, FVCORE, "ntire2024", {"valid": 26.90, "test": 26.99}, _DIV2K_LSDIR,
               "DIV2K_LSDIR valid / test (200 images each)", "RLFN", ENVIRONMENT_2024,
               "the 2024 kit's requirements.txt (torch 1.13.1, einops, timm, fvcore, ...)"),
    2025: Year(2025, FVCORE, "ntire2024", {"valid": 26.90, "test": 26.99}, _DIV2K_LSDIR,
               "DIV2K_LSDIR valid / test (200 images each)", "EFDN", ENVIRONMENT_2024,
               "the 2024/2025 kits' requirements.txt (torch 1.13.1, einops, timm, fvcore, ...)"),
}


def year_rules(year: int) -> Year:
    if year not in YEARS:
        raise KitError(f"unknown --year {year}; choose one of {', '.join(map(str, YEARS))}")
    return YEARS[year]


@dataclass(frozen=True)
class Convention:
    """How results are keyed and which FLOPs counter ``flops`` holds (see the module docstring)."""

    label: str
    years: tuple[int, ...]
    flops_counter: str

    @property
    def official(self) -> bool:
        """True when the run follows a challenge year's conventions (keys, ``flops``)."""
        return bool(self.years)

    @property
    def counter_label(self) -> str:
        """Which counter ``flops`` holds, for results.json and reports."""
        return "fvcore (2024-2025)" if self.flops_counter == FVCORE else "official hook counter (2022-2023)"

    @property
    def baselines(self) -> frozenset[str]:
        return frozenset(YEARS[y].baseline.lower() for y in self.years)

    def key(self, entry: Entry) -> str:
        """``00_<Name>_baseline`` for a year's baseline -- the registered entry (unless a team number was given), or a
        team file numbered 0 of that name (the kits' ``models/team00_EFDN.py``) -- else the entry's key; the name made
        safe either way (:func:`esrkit.names.safe_name`)."""
        baseline = entry.name.lower() in self.baselines
        if baseline and ((entry.team is None and entry.source is None) or entry.team == 0):
            return f"00_{safe_name(entry.name)}_baseline"
        return entry.key

    @classmethod
    def for_run(cls, year: int | None, layout: str) -> "Convention":
        """``--year`` when given, else the years of an official layout, else the kit's own (Table 3) convention."""
        if year is not None:
            rules = year_rules(year)
            return cls(f"NTIRE {year}", (year,), rules.flops_counter)
        years = tuple(y for y, rules in YEARS.items() if rules.layout == layout)
        if years:
            return cls(f"NTIRE {years[0]}-{years[-1]} ({layout} layout)", years, YEARS[years[-1]].flops_counter)
        return cls("esrkit (Table 3 of the MLRN paper)", (), HOOKS)
