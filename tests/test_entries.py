"""Every registered entry, automatically: it is data (class + arguments), builds, counts, runs, loads its
default weights where they are present, and keys its results uniquely. A new entry in models/ is covered
by these tests without writing any."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from esrkit.measure.complexity import count
from esrkit.registry import list_entries

ENTRIES = list_entries()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_is_data_builds_counts_and_runs(entry) -> None:
    assert isinstance(entry.arch, type) and issubclass(entry.arch, nn.Module), "register the class, not a builder"
    bound = entry.bound_arguments()  # the arguments fit the class's signature
    assert set(bound) <= set(inspect.signature(entry.arch).parameters)
    model = entry.build()
    assert type(model) is entry.arch and not model.training
    counts = count(model, counters=("official",), second_probe=False)
    assert counts.params == sum(p.numel() for p in model.parameters()) > 0 and counts.num_conv > 0
    assert entry.scale in (2, 3, 4) and entry.data_range in (1.0, 255.0)
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0)) * entry.data_range
    with torch.no_grad():
        assert tuple(model(x).shape) == (1, 3, 24 * entry.scale, 20 * entry.scale)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.has_default_weights()], ids=lambda e: e.name)
def test_default_weights_load_strictly(entry) -> None:
    loaded = entry.load()
    assert loaded.report.strict and not loaded.report.missing and not loaded.report.unexpected
    assert loaded.weights == entry.default_weights_path()


def test_names_ids_and_results_keys_are_unique() -> None:
    assert len({e.name.lower() for e in ENTRIES}) == len({e.model_id for e in ENTRIES}) == len({e.key for e in ENTRIES})
    assert len(ENTRIES) >= 5 and any(e.has_default_weights() for e in ENTRIES)  # MLRN-entire's own weights


# --- names as keys: any name, one safe folder name ------------------------------------------------------------


@pytest.mark.parametrize("name, key", [
    ("[FEAN]", "FEAN"), ("../../../victim", "victim"), ("a/b\\c", "a_b_c"), ("Café Net", "Cafe_Net"),
    ("tab\tand\nnewline\x00", "tab_and_newline"), ("...", None), ("..", None), ("", None), ("/", None),
    ("x" * 200, None), ("SPAN+", "SPAN+"), ("MLRN-entire", "MLRN-entire"), ("EFDN_baseline", "EFDN_baseline"),
])
def test_any_name_becomes_one_safe_folder_name(tmp_path, name, key) -> None:
    from esrkit.names import MAX_NAME, child_folder, is_one_component, safe_name

    safe = safe_name(name)
    if key is not None:
        assert safe == key
    assert 0 < len(safe) <= MAX_NAME and ".." not in safe and is_one_component(safe) and safe.isascii()
    assert safe_name(safe) == safe and safe_name(name) == safe  # stable, and a safe name stays as it is
    assert child_folder(tmp_path, safe, "--save_dir").resolve().parent == tmp_path.resolve()


def test_distinct_unreadable_names_stay_distinct_and_traversal_is_refused(tmp_path) -> None:
    from esrkit.errors import KitError
    from esrkit.names import child_folder, safe_name

    assert safe_name("..") != safe_name("[]") and safe_name("a" * 100 + "1") != safe_name("a" * 100 + "2")
    for bad in ("..", "a/../..", "/etc", "."):
        with pytest.raises(KitError, match="would not be inside it"):
            child_folder(tmp_path, bad, "--save_dir")


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_registered_names_are_their_own_keys(entry) -> None:
    assert entry.key == f"{entry.model_id:02}_{entry.name}" and not entry.renamed
