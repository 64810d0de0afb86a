"""The results page as a person sees it: opened from disk in headless Chromium, driven by Selenium.

Selenium (W3C WebDriver) rather than the raw DevTools protocol: it is the well-kept client for exactly this,
it reads the console through chromedriver's log, and clicks like a user; the Debian `chromium-driver`
package matches the browser's version, and giving Selenium its path means it never fetches a driver.
The page is built from a results.json written here by hand (a baseline, GPU teams with valid and test
splits, an input-dependent one, a non-strict load, a CPU entry, a failed team), never by running models;
and from a 40-team round of such entries (runtimes over 1000x, so that the score overflows for the slowest;
two torch versions; an entry of the 2023 convention on Set5 kept by ``merge --allow_mixed``), read at a
1400 px wide window. Skips, with the reason, where no browser, driver or Selenium can be had (`.ci/run` installs them).
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from esrkit.results_page import write_results_page

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install 'selenium>=4.20,<5')")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVERS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
SCREENSHOT_COPY = Path("/tmp/results_page_screenshot.png")
ROUND_SCREENSHOT_COPY = Path("/tmp/results_page_40_teams.png")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1600,1000", "--hide-scrollbars")
# How the page rounds each key (the official results.txt's precision; per-image PSNR to 3 decimals).
DECIMALS = {"valid_ave_psnr": 2, "test_ave_psnr": 2, "valid_ave_runtime": 2, "test_ave_runtime": 2,
            "valid_median_warm_runtime": 2, "valid_runtime": 2, "num_parameters": 3, "flops": 2, "flops_fvcore": 2,
            "flops_hook": 2, "activations": 2, "valid_memory": 2, "valid_psnr": 3}
BASELINE = "00_EFDN_baseline"
ENVIRONMENT = {"python": "3.11.7", "torch": "2.13.0+cu124", "platform": "Linux-5.15.0-105-generic-x86_64-with-glibc2.35",
               "packages": {}}


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if Path(p).is_file()), None)


def gpu_entry(runtime: list[float], psnr: list[float], test_runtime: float, test_psnr: float, params: float,
              fvcore: float, hook: float, acts: float, memory: float, conv: int, **extra: Any) -> dict[str, Any]:
    record = {
        "valid_runtime": runtime, "valid_memory": memory, "valid_ave_runtime": sum(runtime) / len(runtime),
        "valid_psnr": psnr, "valid_ave_psnr": sum(psnr) / len(psnr), "valid_images": ["0801", "0802", "0803"][:len(psnr)],
        "test_runtime": [test_runtime], "test_memory": memory + 100.0, "test_ave_runtime": test_runtime,
        "test_psnr": [test_psnr], "test_ave_psnr": test_psnr,
        "valid_median_warm_runtime": sorted(runtime)[len(runtime) // 2] * 0.9,
        "num_parameters": params, "flops": fvcore, "flops_counter": "fvcore (2024-2025)", "flops_hook": hook,
        "flops_fvcore": fvcore, "activations": acts, "num_conv": conv,
        "complexity_probe": "counted on torch.rand(1, 3, 256, 256) from torch.Generator().manual_seed(0)",
        "device": "NVIDIA H200", "device_type": "cuda", "memory_measured": True,
        "timing": "CUDA events around the forward pass",
        "weights_loading": "state_dict the file itself, strict=True, weights_only=True",
        "results_convention": "NTIRE 2025", "layout": "ntire2024", "data_dir": "/data/DIV2K_LSDIR",
    }
    record.update(extra)
    return record


def hand_written_round() -> tuple[dict[str, Any], dict[str, Any]]:
    """results.json and batch_status.json of a small NTIRE 2025 round, written by hand."""
    results = {
        BASELINE: gpu_entry([24.61, 17.3, 16.9], [27.012, 26.883, 26.95], 18.2, 27.01, 0.276192, 16.70, 16.73,
                            111.12, 662.89, 65),
        "07_NanoSR": gpu_entry([21.04, 14.2, 14.75], [27.101, 26.9, 26.99], 15.5, 27.04, 0.550992, 36.02, 35.99,
                               88.08, 590.12, 28),
        "08_FRnet": gpu_entry([12.5, 9.8, 10.04], [26.97, 26.93, 26.91], 11.1, 27.0, 0.211572, 13.85, 13.82, 69.22,
                              401.5, 32, weights_loading="state_dict ['params_ema'], strict=False, weights_only=True; "
                              "non-strict: 2 missing: feats.0.conv1.conv_fuse1.weight, feats.0.conv1.conv_fuse2.weight"),
        "10_MoeASR": gpu_entry([30.2, 22.1, 21.7], [27.2, 27.05, 27.1], 23.4, 27.12, 0.180264, 9.48, 9.42, 288.31,
                               350.0, 147, complexity_input_dependent={"activations": [288305152, 287518720]},
                               complexity_probe="counted on torch.rand(1, 3, 256, 256) from "
                               "torch.Generator().manual_seed(0); INPUT-DEPENDENT: on a second probe (seed 1) ..."),
        "15_DIPNet_slim_v2": dict(
            gpu_entry([128.84, 120.2, 119.03], [26.94, 26.92, 26.93], 125.0, 27.0, 0.154336, 9.06, 9.05, 58.81, 0.0,
                      39, notes=["team15_DIPNet_slim_v2.py hard-codes CUDA (line 336: .cuda()); off CUDA those calls "
                                 "are redirected to the run's device"]),
            device="CPU x86_64 (16 threads)", device_type="cpu", memory_measured=False,
            timing="wall clock around the forward pass"),
    }
    return results, batch_status(results, "team21_Broken.py")


def batch_status(results: dict[str, Any], failed: str) -> dict[str, Any]:
    """batch_status.json of a batch that measured ``results`` and failed on the team file ``failed``."""
    status = {f"team {k[:2]} ({k}.py)" if k != BASELINE else "entry EFDN":
              {"key": k, "status": "ok", "error": "", "fingerprint": "0" * 40, "date": "2026-12-02T10:00:00+00:00"}
              for k in results}
    label = f"team {failed[4:6]} ({failed})"
    status[label] = {"key": None, "status": "failed", "fingerprint": "0" * 40, "date": "2026-12-02T10:05:00+00:00",
                     "error": f"{label}: No module named 'timm': pip install timm"}
    return status


def toy_round(teams: int = 40, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """results.json and batch_status.json of a round of ``teams`` toy entries of the shape `batch` writes:
    runtimes from 0.4x to 400x the baseline's (the slowest scores overflow a float), one long team name,
    flags from none to three, three teams under another torch, einops at two versions, an older entry with
    only torch_version, an entry of the 2023 convention on Set5 (kept by merge --allow_mixed), a failed team."""
    rng = random.Random(seed)
    images = ["0801", "0802", "0803"]

    def entry(runtime: float, psnr: float, params: float, fvcore: float, **extra: Any) -> dict[str, Any]:
        per_image = [runtime * f for f in (1.1, 0.95, 0.95)]
        record = gpu_entry(per_image, [psnr + d for d in (0.02, -0.01, -0.01)], runtime * 1.05, psnr + 0.1, params,
                           fvcore, fvcore * 1.002, 40.0 + 300 * params, 150.0 + 900 * params, rng.randint(20, 160),
                           valid_images=images, data_fingerprint="d1v2k15d1r" * 3 + "aa",
                           environment=json.loads(json.dumps(ENVIRONMENT)), date="2026-12-01T10:00:00+00:00")
        record.update(extra)
        return record

    results = {BASELINE: entry(10.0, 27.01, 0.276, 16.7)}
    spread = [10.0 * 0.4 * 1000 ** (i / (teams - 1)) for i in range(teams)]  # 4 ms .. 4000 ms
    rng.shuffle(spread)
    for n in range(1, teams + 1):
        name = "SuperResolutionWithAVeryLongTeamName_v2" if n == 17 else f"Team{chr(ord('A') + n % 26)}{n}"
        runtime = spread[n - 1]
        # the faster, the lower the PSNR (a front), with noise; every team above the 2025 bars
        psnr = 26.93 + 0.12 * math.log10(runtime) + rng.uniform(0.0, 0.12)
        e = entry(runtime, psnr, rng.uniform(0.1, 0.6), rng.uniform(5.0, 40.0))
        if n % 7 == 0:
            e["notes"] = [f"team{n:02}_{name}.py hard-codes CUDA (line 12: .cuda()); off CUDA those calls are redirected"]
        if n % 5 == 0:
            e["weights_loading"] = "state_dict ['params'], strict=False, weights_only=True; non-strict: 1 missing: tail.bias"
        if n % 11 == 0:
            e["complexity_input_dependent"] = {"activations": [120000000, 119000000]}
        if n in (3, 9, 27):
            e["environment"]["torch"] = "2.5.1+cu124"
        if n in (4, 8, 12, 16):
            e["environment"]["packages"] = {"einops": "0.8.1" if n != 16 else "0.7.0"}
        if n == 30:
            del e["environment"]
            e["torch_version"] = "2.13.0+cu124"
        results[f"{n:02}_{name}"] = e
    results["41_OldRound"] = entry(30.0, 29.2, 0.3, 20.0, results_convention="NTIRE 2023", layout="benchmark",
                                   flops_counter="official hook counter (2022-2023)", data_dir="/data/Set5",
                                   data_fingerprint="5e75" * 8, valid_images=["baby", "bird", "butterfly"])
    return results, batch_status(results, "team42_Broken.py")


def exp_or_inf(x: float) -> float:
    """exp(x), or inf where math.exp raises OverflowError (the page shows such a score as "overflow")."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def expected(results: dict[str, Any], span: dict[str, str], unranked: tuple[str, ...] = ()) -> float | int:
    """The value a number of the page must have, from results.json alone (formulas written out here).
    ``unranked``: entries that take no part in the ranking beside the baseline and CPU entries."""
    entry = results[span["entry"]]
    if span.get("key"):
        value = entry[span["key"]]
        return value[int(span["index"])] if span.get("index") else value
    base = results[BASELINE]

    def ave(e: dict[str, Any]) -> float:
        return (e["valid_ave_runtime"] + e["test_ave_runtime"]) / 2

    exponents = {"runtime": 2 * ave(entry) / ave(base), "flops": 2 * entry["flops_fvcore"] / base["flops_fvcore"],
                 "params": 2 * entry["num_parameters"] / base["num_parameters"]}
    weights = {"runtime": 0.7, "flops": 0.15, "params": 0.15}
    parts = {k: exp_or_inf(x) for k, x in exponents.items()}
    parts["final"] = sum(weights[k] * parts[k] for k in weights)
    top = max(exponents.values())  # ln(final), to order the scores that overflow
    parts["ln_final"] = top + math.log(math.fsum(weights[k] * math.exp(x - top) for k, x in exponents.items()))
    derived = span["derived"]
    if derived == "runtime_ave":
        return ave(entry)
    if derived == "ratio":
        return ave(entry) / ave(base)
    if derived.startswith("score_"):
        return parts[derived.removeprefix("score_")]
    if derived == "psnr_diff":
        i = int(span["index"])
        j = base["valid_images"].index(entry["valid_images"][i])
        return entry["valid_psnr"][i] - base["valid_psnr"][j]
    if derived == "rank":  # the score among the GPU teams (the baseline and the CPU entry are not ranked)
        teams = [k for k, e in results.items() if k != BASELINE and e["device_type"] == "cuda" and k not in unranked]
        scores = {k: (expected(results, {"entry": k, "derived": "score_final"}),
                      expected(results, {"entry": k, "derived": "score_ln_final"})) for k in teams}
        return sorted(teams, key=scores.__getitem__).index(span["entry"]) + 1
    raise AssertionError(f"unknown derived number {derived!r}")


def shown(value: float | int, span: dict[str, str]) -> str:
    """How the page must print ``value``: the test's own table of precisions."""
    derived = span.get("derived")
    if derived in ("rank",):
        return str(value)
    if derived == "psnr_diff":
        return f"{value:+.3f}"
    if derived and derived.startswith("score_"):  # a score whose digits say nothing is said in words
        return "overflow" if math.isinf(value) else "> 1e6" if value >= 1e6 else f"{value:.4f}"
    if derived in ("ratio", "runtime_ave"):
        return f"{value:.2f}"
    if span["key"] == "num_conv":
        return str(value)
    return f"{value:.{DECIMALS[span['key']]}f}"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver = _first(BROWSERS), _first(DRIVERS)
    if binary is None or driver is None:
        pytest.skip(f"no Chromium ({' / '.join(BROWSERS)}) or chromedriver ({' / '.join(DRIVERS)}): "
                    "apt-get install chromium chromium-driver (.ci/run does it as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="esrkit-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is a reason to skip, said
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"Chromium ({binary}) did not start under {driver}: {str(exc).splitlines()[0]}")
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open_page(browser: webdriver.Chrome, folder: Path, made: tuple[dict[str, Any], dict[str, Any]],
               width: int) -> tuple[Path, dict[str, Any]]:
    """results.json and batch_status.json written as files, the page made from what is read back, and opened
    in a window ``width`` px wide."""
    results, status = made
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (folder / "batch_status.json").write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    path = folder / "results.html"
    write_results_page(path, json.loads((folder / "results.json").read_text(encoding="utf-8")),
                       status=json.loads((folder / "batch_status.json").read_text(encoding="utf-8")))
    browser.set_window_size(width, 1000)
    browser.get(path.as_uri())
    return path, results


@pytest.fixture(scope="module")
def page(browser: webdriver.Chrome, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return _open_page(browser, tmp_path_factory.mktemp("results_page"), hand_written_round(), 1600)


ROUND_UNRANKED = ("41_OldRound",)  # of the 2023 convention, on Set5: kept by merge --allow_mixed, never ranked


@pytest.fixture(scope="module")
def round_page(browser: webdriver.Chrome, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The 40-team round's page, in a window 1400 px wide."""
    return _open_page(browser, tmp_path_factory.mktemp("round_page"), toy_round(), 1400)


def _rows(browser: webdriver.Chrome) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#standings tbody tr')).map(tr => tr.dataset.entry)")


def test_page_loads_with_no_console_message_and_nothing_from_outside(browser: webdriver.Chrome,
                                                                      page: tuple[Path, dict[str, Any]]) -> None:
    logs = browser.get_log("browser")
    assert logs == [], logs  # no error, no warning, no CSP violation, nothing logged at all
    assert browser.title == "NTIRE 2025 Efficient SR — results"
    # every resource is inline: the browser fetched nothing (data: images are not network resources)
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched == []
    plots = browser.find_elements(By.CSS_SELECTOR, "figure svg.plot")  # the frontiers: inline SVG
    assert len(plots) == 2 and all(p.is_displayed() and p.size["width"] == 660 for p in plots)
    images = browser.find_elements(By.TAG_NAME, "img")  # the per-image plots of the drill-downs
    assert len(images) >= 2 and all(img.get_attribute("src").startswith("data:image/png;base64,") for img in images)
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
               for img in images[:2]), "a per-image plot did not decode"


@pytest.mark.parametrize("which", ["page", "round_page"])
def test_every_number_shown_equals_results_json(browser: webdriver.Chrome, which: str,
                                                request: pytest.FixtureRequest) -> None:
    path, results = request.getfixturevalue(which)
    unranked = ROUND_UNRANKED if which == "round_page" else ()
    browser.get(path.as_uri())
    browser.execute_script("document.querySelectorAll('details').forEach(d => { d.open = true; })")  # drill-downs too
    # a number names its entry, or inherits it from its row or drill-down
    spans = browser.execute_script(
        "return Array.from(document.querySelectorAll('span.num')).map(s => Object.assign("
        "{text: s.textContent, entry: s.closest('[data-entry]').dataset.entry}, s.dataset))")
    assert len(spans) > 100
    checked = set()
    for span in spans:
        want = expected(results, span, unranked)
        got = float(span["value"])
        assert got == want or math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0), span
        if not span.get("derived"):
            assert got == want, span  # read from results.json: exactly its value
        assert span["text"] == shown(want, span), span
        checked.add(span.get("key") or span.get("derived"))
    assert {"valid_ave_psnr", "test_ave_psnr", "valid_ave_runtime", "valid_median_warm_runtime", "num_parameters",
            "flops_fvcore", "flops_hook", "activations", "valid_memory", "num_conv", "valid_psnr", "rank",
            "score_final", "ratio", "runtime_ave", "psnr_diff"} <= checked
    if which == "round_page":  # the slowest teams' scores, in words
        texts = [s["text"] for s in spans if s.get("derived") == "score_final"]
        assert "overflow" in texts and "> 1e6" in texts and max(len(t) for t in texts) <= 11
        return
    cpu = browser.find_element(By.CSS_SELECTOR, '#standings tr[data-entry="15_DIPNet_slim_v2"]')
    assert cpu.find_element(By.CSS_SELECTOR, 'td[data-col="memory"]').text == "not measured"
    assert "CPU" in cpu.find_element(By.CSS_SELECTOR, 'td[data-col="runtime_valid"]').text


def test_flags_are_said_in_words(browser: webdriver.Chrome, page: tuple[Path, dict[str, Any]]) -> None:
    browser.get(page[0].as_uri())
    text = browser.find_element(By.CSS_SELECTOR, "dl.flaglist").text
    assert "counts are input-dependent (activations 288,305,152 vs 287,518,720 on two probes)" in text
    assert "torch.Generator().manual_seed(0)" in text
    assert "hard-codes CUDA" in text and "redirected" in text
    assert "weights loaded non-strictly, keys left out: 2 missing: feats.0.conv1.conv_fuse1.weight" in text
    assert "runtime measured on CPU x86_64 (16 threads)" in text
    assert "failed: team 21 (team21_Broken.py): No module named 'timm': pip install timm" in text


def test_sorting_by_runtime_reorders_the_rows(browser: webdriver.Chrome, page: tuple[Path, dict[str, Any]]) -> None:
    path, results = page
    browser.get(path.as_uri())
    header = browser.find_element(By.CSS_SELECTOR, '#standings th[data-col="runtime_valid"] button')
    before = _rows(browser)
    by_runtime = sorted(results, key=lambda k: results[k]["valid_ave_runtime"])
    failed = [r for r in before if r not in results]
    assert failed == ["team 21 (team21_Broken.py)"] and before != by_runtime + failed
    header.click()
    assert _rows(browser) == by_runtime + failed  # ascending, the row without a runtime last
    header.click()
    assert _rows(browser) == by_runtime[::-1] + failed  # descending, still last
    th = browser.find_element(By.CSS_SELECTOR, '#standings th[data-col="runtime_valid"]')
    assert th.get_attribute("aria-sort") == "descending"
    team = browser.find_element(By.CSS_SELECTOR, '#standings th[data-col="team"] button')
    team.click()
    assert _rows(browser)[:5] == sorted(results)  # words sort as words


def test_screenshot_is_written_next_to_the_page(browser: webdriver.Chrome, page: tuple[Path, dict[str, Any]]) -> None:
    path, _ = page
    browser.get(path.as_uri())
    first = browser.find_element(By.CSS_SELECTOR, "#standings tbody tr td[data-col='team'] a")
    name = first.text
    first.click()  # a team's name opens its drill-down
    details = browser.find_element(By.CSS_SELECTOR, f"details[data-entry='{name}']")
    assert details.get_attribute("open") is not None and details.find_element(By.CSS_SELECTOR, "table.images").is_displayed()
    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1600, min(int(height), 6000))
    shot = path.with_name("results_page.png")
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    try:
        shutil.copyfile(shot, SCREENSHOT_COPY)
    except OSError:
        pass  # the copy for a person to look at is a convenience; the one beside the page is the test's
    assert browser.get_log("browser") == []


# --- a round of 40 teams, at 1400 px -----------------------------------------------------------------------


def test_every_column_of_a_40_team_round_can_be_seen_at_1400_px(browser: webdriver.Chrome,
                                                                 round_page: tuple[Path, dict[str, Any]]) -> None:
    """Each header can be scrolled into view and is then on top (not under the sticky rank and team columns),
    with the team column still in view; the page itself never scrolls sideways, the table does."""
    path, _ = round_page
    browser.set_window_size(1400, 900)
    browser.get(path.as_uri())
    assert browser.execute_script("return window.innerWidth") <= 1400
    headers = browser.find_elements(By.CSS_SELECTOR, "#standings thead th")
    cols = [th.get_attribute("data-col") for th in headers]
    assert {"rank", "team", "score", "runtime_valid", "acts", "memory", "conv", "status", "flags"} <= set(cols)
    for th in headers:
        seen = browser.execute_script("""
            const th = arguments[0], wrap = th.closest('.wrap');
            th.scrollIntoView({block: 'nearest', inline: 'nearest'});
            const r = th.getBoundingClientRect(), w = wrap.getBoundingClientRect();
            const x = (r.left + r.right) / 2, y = (r.top + r.bottom) / 2;
            const top = document.elementFromPoint(x, y);
            const team = document.querySelector('#standings th[data-col="team"]').getBoundingClientRect();
            const tx = (team.left + team.right) / 2, ty = (team.top + team.bottom) / 2;
            return {inside: r.left >= w.left - 0.5 && r.right <= w.right + 0.5 && r.right <= window.innerWidth,
                    onTop: top !== null && th.contains(top),
                    teamOnTop: document.elementFromPoint(tx, ty).closest('th') !== null &&
                               document.elementFromPoint(tx, ty).closest('th').dataset.col === 'team',
                    pageWidth: document.documentElement.scrollWidth, width: r.width};""", th)
        col = th.get_attribute("data-col")
        assert th.is_displayed() and seen["inside"] and seen["onTop"], (col, seen)
        assert seen["teamOnTop"], (col, seen)  # the team column stays in view
        assert seen["pageWidth"] <= 1400, (col, seen)
    widths = {th.get_attribute("data-col"): th.size["width"] for th in headers}
    assert widths["score"] <= 100, widths  # no 64-digit numbers
    notes = " ".join(p.text for p in browser.find_elements(By.CSS_SELECTOR, "p.caution"))
    assert "Measured under 2 environments, ranked together here" in notes and "torch 2.5.1+cu124" in notes
    assert "03_TeamD3, 09_TeamJ9, 27_TeamB27" in notes and "einops at 2 versions" in notes


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def test_plot_labels_of_a_40_team_round_do_not_overlap(browser: webdriver.Chrome,
                                                       round_page: tuple[Path, dict[str, Any]]) -> None:
    """Every point numbered, as measured by the browser: no two labels overlap, no label covers a point;
    runtimes over 1000x on a log axis (decades); the key names each number."""
    path, results = round_page
    browser.get(path.as_uri())
    plots = browser.execute_script("""
        const box = e => { const r = e.getBoundingClientRect();
                           return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
        return Array.from(document.querySelectorAll('svg.plot')).map(svg => ({
            labels: Array.from(svg.querySelectorAll('text.label')).map(t => Object.assign(box(t), {text: t.textContent})),
            points: Array.from(svg.querySelectorAll('g.pt')).map(g => Object.assign(box(g.lastElementChild),
                                                                                   {entry: g.dataset.entry})),
            ticks: Array.from(svg.querySelectorAll('text.tick')).map(t => t.textContent)}));""")
    assert len(plots) == 2
    plotted = set(results) - set(ROUND_UNRANKED)
    for plot in plots:
        labels, points = plot["labels"], plot["points"]
        assert {p["entry"] for p in points} == plotted and len(labels) == len(points)
        for i, a in enumerate(labels):
            assert a["right"] - a["left"] > 3, a
            for b in labels[i + 1:]:
                assert not _overlap(a, b), (a, b)
            for p in points:
                assert not _overlap(a, p), (a, p)
    assert {"10", "100", "1000"} <= set(plots[0]["ticks"])  # the runtime axis: log, in decades
    key = {li.find_element(By.TAG_NAME, "b").text: li.find_element(By.TAG_NAME, "a").text
           for li in browser.find_elements(By.CSS_SELECTOR, "ul.key li")}
    assert set(key.values()) == plotted and {lab["text"] for lab in plots[0]["labels"]} == set(key)
    ranks = browser.execute_script("return Object.fromEntries(Array.from(document.querySelectorAll("
                                   "'#standings tbody tr')).map(tr => [tr.dataset.entry, tr.cells[0].textContent.trim()]))")
    assert all(ranks[name] == number for number, name in key.items() if ranks[name].isdigit())


def _sort_keys(browser: webdriver.Chrome, col: str) -> list[tuple[str, Any]]:
    """Per row, what the column holds: ('n', number) -- a data-sort count or the first number's data-value --
    ('t', text), or ('-', None) for a dash or nothing."""
    return [tuple(k) for k in browser.execute_script("""
        return Array.from(document.querySelectorAll('#standings tbody tr')).map(tr => {
            const td = tr.querySelector('td[data-col="' + arguments[0] + '"]');
            if (td.hasAttribute('data-sort')) return ['n', td.dataset.sort];
            const num = td.querySelector('.num');
            if (num) return ['n', num.dataset.value];
            const txt = td.querySelector('.txt'), text = txt ? txt.textContent.trim() : '';
            return text === '' || text === '-' ? ['-', null] : ['t', text];
        });""", col)]


def _natural(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.casefold()) for part in re.split(r"(\d+)", text) if part]


def _in_order(keys: list[tuple[str, Any]], descending: bool) -> bool:
    """Numbers (inf included) in order, then words in natural order, then the missing; either direction
    keeps the missing last."""
    kinds = [k for k, _ in keys]
    present = [k for k in kinds if k != "-"]
    if kinds != present + ["-"] * (len(kinds) - len(present)):
        return False
    numbers = [float(v) for k, v in keys if k == "n"]
    words = [_natural(v) for k, v in keys if k == "t"]
    sign = -1 if descending else 1
    if numbers and words and (kinds.index("t") < kinds.index("n")) != descending:
        return False  # numbers before words ascending, after them descending
    return all(sign * (b - a) >= 0 for a, b in zip(numbers, numbers[1:])) and \
        all((b >= a) if not descending else (b <= a) for a, b in zip(words, words[1:]))


def test_every_column_of_a_40_team_round_sorts(browser: webdriver.Chrome, round_page: tuple[Path, dict[str, Any]]) -> None:
    """A click on each header puts the rows in its order (Flags: by how many), a second click reverses it;
    a score that overflows sorts after every finite one."""
    path, results = round_page
    browser.get(path.as_uri())
    cols = [th.get_attribute("data-col") for th in browser.find_elements(By.CSS_SELECTOR, "#standings thead th")]
    for col in cols:
        button = browser.find_element(By.CSS_SELECTOR, f'#standings th[data-col="{col}"] button')
        before = _rows(browser)
        button.click()
        th = browser.find_element(By.CSS_SELECTOR, f'#standings th[data-col="{col}"]')
        first = th.get_attribute("aria-sort")
        keys = _sort_keys(browser, col)
        assert _in_order(keys, descending=first == "descending"), (col, first, keys)
        assert len({v for _, v in keys}) >= 2, col  # the column holds something to sort by
        button.click()
        keys = _sort_keys(browser, col)
        assert th.get_attribute("aria-sort") != first and _in_order(keys, descending=first != "descending"), (col, keys)
        assert sorted(_rows(browser)) == sorted(before)
    for col, order, first in (("flags", "descending", "35_TeamJ35"), ("score", "ascending", "01_TeamB1")):
        button = browser.find_element(By.CSS_SELECTOR, f'#standings th[data-col="{col}"] button')
        while browser.find_element(By.CSS_SELECTOR, f'#standings th[data-col="{col}"]').get_attribute("aria-sort") != order:
            button.click()
        assert _rows(browser)[0] == first, col  # the team with the most flags (two); the best score
    scores = [v for kind, v in _sort_keys(browser, "score") if kind == "n"]
    assert scores[-1] == "inf" and "inf" not in scores[:-1]  # the score that overflows: after every finite one


def test_screenshot_of_a_40_team_round(browser: webdriver.Chrome, round_page: tuple[Path, dict[str, Any]]) -> None:
    path, _ = round_page
    browser.set_window_size(1400, 900)
    browser.get(path.as_uri())
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height), 7000))
    shot = path.with_name("results_page_40_teams.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
    try:
        shutil.copyfile(shot, ROUND_SCREENSHOT_COPY)
    except OSError:
        pass
    assert browser.get_log("browser") == []
