"""The results page as a person sees it: opened from disk in headless Chromium, driven by Selenium.

Selenium (W3C WebDriver) rather than the raw DevTools protocol: it is the well-kept client for exactly this,
it reads the console through chromedriver's log, and clicks like a user; the Debian `chromium-driver`
package matches the browser's version, and giving Selenium its path means it never fetches a driver.
The page is built from a results.json written here by hand (a baseline, GPU teams with valid and test
splits, an input-dependent one, a non-strict load, a CPU entry, a failed team), never by running models.
Skips, with the reason, where no browser, driver or Selenium can be had (`.ci/run` installs them).
"""

from __future__ import annotations

import json
import math
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
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1600,1000", "--hide-scrollbars")
# How the page rounds each key (the official results.txt's precision; per-image PSNR to 3 decimals).
DECIMALS = {"valid_ave_psnr": 2, "test_ave_psnr": 2, "valid_ave_runtime": 2, "test_ave_runtime": 2,
            "valid_median_warm_runtime": 2, "valid_runtime": 2, "num_parameters": 3, "flops": 2, "flops_fvcore": 2,
            "flops_hook": 2, "activations": 2, "valid_memory": 2, "valid_psnr": 3}
BASELINE = "00_EFDN_baseline"


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
    status = {f"team {k[:2]} ({k}.py)" if not k.startswith("00") else "entry EFDN":
              {"key": k, "status": "ok", "error": "", "fingerprint": "0" * 40, "date": "2026-12-02T10:00:00+00:00"}
              for k in results}
    status["team 21 (team21_Broken.py)"] = {"key": None, "status": "failed", "fingerprint": "0" * 40,
                                            "error": "team 21 (team21_Broken.py): No module named 'timm': pip install timm",
                                            "date": "2026-12-02T10:05:00+00:00"}
    return results, status


def expected(results: dict[str, Any], span: dict[str, str]) -> float | int:
    """The value a number of the page must have, from results.json alone (formulas written out here)."""
    entry = results[span["entry"]]
    if span.get("key"):
        value = entry[span["key"]]
        return value[int(span["index"])] if span.get("index") else value
    base = results[BASELINE]

    def ave(e: dict[str, Any]) -> float:
        return (e["valid_ave_runtime"] + e["test_ave_runtime"]) / 2

    parts = {"runtime": math.exp(2 * ave(entry) / ave(base)),
             "flops": math.exp(2 * entry["flops_fvcore"] / base["flops_fvcore"]),
             "params": math.exp(2 * entry["num_parameters"] / base["num_parameters"])}
    parts["final"] = 0.7 * parts["runtime"] + 0.15 * parts["flops"] + 0.15 * parts["params"]
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
        teams = [k for k, e in results.items() if k != BASELINE and e["device_type"] == "cuda"]
        finals = {k: expected(results, {"entry": k, "derived": "score_final"}) for k in teams}
        return sorted(teams, key=finals.__getitem__).index(span["entry"]) + 1
    raise AssertionError(f"unknown derived number {derived!r}")


def shown(value: float | int, span: dict[str, str]) -> str:
    """How the page must print ``value``: the test's own table of precisions."""
    derived = span.get("derived")
    if derived in ("rank",):
        return str(value)
    if derived == "psnr_diff":
        return f"{value:+.3f}"
    if derived and derived.startswith("score_"):
        return f"{value:.4f}"
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


@pytest.fixture(scope="module")
def page(browser: webdriver.Chrome, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("results_page")
    results, status = hand_written_round()
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (folder / "batch_status.json").write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    path = folder / "results.html"
    write_results_page(path, json.loads((folder / "results.json").read_text(encoding="utf-8")),
                       status=json.loads((folder / "batch_status.json").read_text(encoding="utf-8")))
    browser.get(path.as_uri())
    return path, results


def _rows(browser: webdriver.Chrome) -> list[str]:
    return [tr.get_attribute("data-entry") for tr in browser.find_elements(By.CSS_SELECTOR, "#standings tbody tr")]


def test_page_loads_with_no_console_message_and_nothing_from_outside(browser: webdriver.Chrome,
                                                                      page: tuple[Path, dict[str, Any]]) -> None:
    logs = browser.get_log("browser")
    assert logs == [], logs  # no error, no warning, no CSP violation, nothing logged at all
    assert browser.title == "NTIRE 2025 Efficient SR — results"
    # every resource is inline: the browser fetched nothing (data: images are not network resources)
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched == []
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 2 and all(img.get_attribute("src").startswith(("data:image/svg+xml;base64,", "data:image/png;base64,"))
                                    for img in images)
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
               for img in images[:2]), "a frontier plot did not decode"


def test_every_number_shown_equals_results_json(browser: webdriver.Chrome, page: tuple[Path, dict[str, Any]]) -> None:
    _, results = page
    for details in browser.find_elements(By.CSS_SELECTOR, "details"):  # the drill-downs' numbers too
        browser.execute_script("arguments[0].open = true", details)
    # a number names its entry, or inherits it from its row or drill-down
    spans = browser.execute_script(
        "return Array.from(document.querySelectorAll('span.num')).map(s => Object.assign("
        "{text: s.textContent, entry: s.closest('[data-entry]').dataset.entry}, s.dataset))")
    assert len(spans) > 100
    checked = set()
    for span in spans:
        want = expected(results, span)
        got = float(span["value"])
        assert got == want or math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0), span
        if not span.get("derived"):
            assert got == want, span  # read from results.json: exactly its value
        assert span["text"] == shown(want, span), span
        checked.add(span.get("key") or span.get("derived"))
    assert {"valid_ave_psnr", "test_ave_psnr", "valid_ave_runtime", "valid_median_warm_runtime", "num_parameters",
            "flops_fvcore", "flops_hook", "activations", "valid_memory", "num_conv", "valid_psnr", "rank",
            "score_final", "ratio", "runtime_ave", "psnr_diff"} <= checked
    cpu = browser.find_element(By.CSS_SELECTOR, '#standings tr[data-entry="15_DIPNet_slim_v2"]')
    assert cpu.find_element(By.CSS_SELECTOR, 'td[data-col="memory"]').text == "not measured"
    assert "CPU" in cpu.find_element(By.CSS_SELECTOR, 'td[data-col="runtime_valid"]').text


def test_flags_are_said_in_words(browser: webdriver.Chrome, page: tuple[Path, dict[str, Any]]) -> None:
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
