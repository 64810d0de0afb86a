"""``submission spec --from_select_model``: an official kit's ``select_model`` read (never run) into a TOML spec.

The kit files here are fixtures written for these tests in the style of the official 2022, 2024 and 2025
``test_demo.py`` (the idioms, not their code): ``name, data_range = f"{model_id:02}_X", 1.0``, weights through
``os.path.join``, state dicts under a key directly or through a variable, ``strict=False``, the each-module
``switch_deploy`` loop, ``model.repa()``, ``importlib`` + ``getattr``, model id 361, ``None`` among the arguments,
an ``if`` that picks the state key, the team's own ``load_weights``, a name with brackets, and branches that cannot
be read (a helper builds the model, ``pass``, a negative id, several models, a loop). Every table is checked key by
key against values written here by hand, after parsing the written TOML with ``tomllib`` (the reference parser),
and the specs are loaded with ``esrkit.spec.load_spec_file``. ``KIT_CONSTRUCTIONS`` has one branch per
construction, with toy team files and weights the test writes: its spec must build and load as each branch would.

The acceptance test writes a ``test_demo.py`` in the official style for the five NTIRE 2025 teams of
``../shared/submissions`` (facts from its README), with ``models/`` and ``model_zoo/`` linked beside it,
generates the spec and checks that every team resolves to the entry of the hand-written spec of
``tests/test_intake.py`` and counts to the README's published figures. Runtime on this project's 2-core CPU:
about 15 s, nearly all of it the five complexity counts (one torch thread).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from esrkit.errors import KitError
from esrkit.measure.complexity import count
from esrkit.spec import load_spec_file, resolve
from esrkit.submission.select_model import (add_spec_command, read_select_model, render_spec, run_spec_command,
                                            toml_value)
from tests.conftest import SHARED, TOY_NET, require, toy_team, torch_threads
from tests.test_intake import TEAMS, organisers_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def chain_end(tile: str = "None") -> str:
    """How every official select_model ends: no other model id, then the same steps for every network."""
    return ('    else:\n        raise NotImplementedError(f"Model {model_id} is not implemented.")\n\n'
            '    # print(model)\n    model.eval()\n'
            f'    tile = {tile}\n'
            '    for k, v in model.named_parameters():\n        v.requires_grad = False\n'
            '    model = model.to(device)\n    return model, name, data_range, tile\n')


FSANET_BRANCH = '''    elif model_id == 17:
        from models.team17_FSANet_arch import FSANet
        name, data_range = f"{model_id:02}_FSANet", 1.0
        model_path = os.path.join('model_zoo', 'team17_FSANet.pth')
        model = FSANet(fea_ch=56, conv='EPartialBSConvU', rgb_mean=[0.4488, 0.4371, 0.4040], channel_reduction_rate=2,
                       bias=False)
        model.load_state_dict(torch.load(model_path)["params"], strict=True)
        for module in model.modules():
            if hasattr(module, 'switch_deploy'):
                module.switch_deploy()
'''


KIT_2025 = '''import os.path
import logging
import torch
import argparse

from fvcore.nn import FlopCountAnalysis
from utils import utils_logger
from utils import utils_image as util

ZOO = 'model_zoo'


def build_team30(args):
    from models.team30_Helper import Helper
    return Helper()


def select_model(args, device):
    # Model ID is assigned according to the order of the submissions.
    model_id = args.model_id
    if model_id == 0:
        # Baseline
        from models.team00_EFDN import EFDN
        name, data_range = f"{model_id:02}_EFDN_baseline", 1.0
        model_path = os.path.join('model_zoo', 'team00_EFDN.pth')
        model = EFDN()
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 1:
        pass
    elif model_id == 16:
        from models.team16_SCMSR import SCMSR
        name, data_range = f"{model_id:02}_SCMSR", 1.0
        model_path = os.path.join(ZOO, 'team16_SCMSR.pth')
        model = SCMSR()
        state_dict = torch.load(model_path)
        model.load_state_dict(state_dict['params_ema'], strict=True)
''' + FSANET_BRANCH + '''    elif model_id == 23:
        from models.team23_DSCF import DSCF
        name, data_range = f"{model_id:02}_DSCF", 1.0
        model_path = os.path.join('model_zoo', 'team23_DSCF.pth')
        model = DSCF(3, 3, feature_channels=26, upscale=4)
        state_dict = torch.load(model_path)
        model.load_state_dict(state_dict, strict=False)
    elif model_id == 24:
        import importlib
        model_module = importlib.import_module(f'models.team{model_id:02}_SPANF')
        name, data_range = f"{model_id:02}_SPANF", 1.0
        model = getattr(model_module, f'SPANF')(3, 3, upscale=4, feature_channels=32).eval().to(device)
        model_path = os.path.join('model_zoo', f'team{model_id}_spanf.pth')
        stat_dict = torch.load(model_path)['params_ema']
        model.load_state_dict(stat_dict, strict=True)
    elif model_id == 28:
        from models.team28_bvi_srf_arch import BVI_SRF
        name, data_range = f"{(model_id):02}_BVI_SRF", 1.0
        model_path = './model_zoo/team28_bvi_srfnet_g.pth'
        model = BVI_SRF()
        model.load_state_dict(torch.load(model_path, map_location='cpu').get('params'), strict=True)
        model = model.cuda()
        model.eval()
    elif model_id == 30:
        name, data_range = f"{model_id:02}_Helper", 1.0
        model = build_team30(args)
    elif model_id == 40:
        from models.team40_mambairv2light import MambaIRv2LightModel
        name, data_range = f"{model_id:02}_MambaIRv2LightModel", 1.0
        model_path = os.path.join('model_zoo', 'team40_mambairv2light.pth')
        model = MambaIRv2LightModel()
        model.load_weights(model_path)
    elif model_id == 44:
        from models.team44_SPAN import SPAN
        name, data_range = f"{model_id:02}_SPAN", 1.0
        model_path = os.path.join("model_zoo", "team44_SPANx4.pth")
        model = SPAN(feature_channels=48, img_range=data_range)
        model.load_state_dict(torch.load(model_path)["params"], strict=True)
        model.repa()
    elif model_id == 361:
        # the same submission as team 36, with the fast op
        from models.team36_espan import ESPAN
        name, data_range = f"{model_id:02}_espan", 1.0
        model_path = os.path.join('model_zoo', 'team36_espan.pth')
        model = ESPAN(num_in_ch=3,
                      num_out_ch=3,
                      feature_channels=32,
                      upscale=4,
                      bias=True,
                      use_fast_op=True)
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id in (50, 51):
        from models.team50_Twin import Twin
        name, data_range = f"{model_id:02}_Twin", 255.0
        model_path = os.path.join('model_zoo', f'team{model_id}_twin.pth')
        model = Twin(variant=model_id - 50)
        model.load_state_dict(torch.load(model_path), strict=False)
    elif model_id == 52:
        from models.team52_Pair import Student, Teacher
        name, data_range = f"{model_id:02}_Pair", 1.0
        teacher = Teacher()
        model = Student()
        model.load_state_dict(torch.load(os.path.join('model_zoo', 'team52_pair.pth')))
    elif model_id == 53:
        from models.team53_Loop import LoopNet
        name, data_range = f"{model_id:02}_LoopNet", 1.0
        model = LoopNet()
        for part in ['a.pth', 'b.pth']:
            model.load_state_dict(torch.load(part), strict=False)
    elif model_id == 17:
        from models.team17_Other import Other
    elif model_id == 42:
        from models.team42_FEAN import SWAVE
        name, data_range = f"{model_id:02}_[FEAN]", 1.0
        model_path = os.path.join('model_zoo', 'team42_FEAN.pt')
        model = SWAVE(num_in_ch=3, num_out_ch=3, upscale=4, feature_channels=64)
        model.load_state_dict(torch.load(model_path), strict=False)
''' + chain_end() + '''

def main(args):
    utils_logger.logger_info("NTIRE2025-EfficientSR", log_path="NTIRE2025-EfficientSR.log")
    logger = logging.getLogger("NTIRE2025-EfficientSR")
    model, model_name, data_range, tile = select_model(args, torch.device("cpu"))
    flops = FlopCountAnalysis(model, torch.rand(1, 3, 256, 256)).total()
'''

KIT_2024 = '''import os.path
import torch

from fvcore.nn import FlopCountAnalysis
from utils import utils_logger


def select_model(args, device):
    model_id = args.model_id
    if model_id == 0:
        from models.team00_RLFN import RLFN_Prune
        name, data_range = f"{model_id:02}_RLFN_baseline", 255.0
        model_path = os.path.join('model_zoo', 'team00_rlfn.pth')
        model = RLFN_Prune()
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 18:
        from models.team18_MagicSR import MagicSR
        name, data_range = f"{model_id:02}_MagicSR", 1.0
        model_path = os.path.join('model_zoo', 'team18_magicsr.pth')
        model = MagicSR(ngrams=(2,2,2,2), embed_dim= 64, head_dim= None, mlp_ratio= 2.0)
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 23:
        from models.team23_safmnpp import SAFMNPP
        name, data_range = f"{model_id:02}_SAFMNPP", 1.0
        model_path = os.path.join('model_zoo', 'team23_safmnpp.pth')
        model = SAFMNPP(dim=36, n_blocks=6, ffn_scale=1.5, upscaling_factor=4)
        model.load_state_dict(torch.load(model_path)['params_ema'], strict=True)
    elif model_id == 29:
        from models.team29_R2Net import R2Net
        name, data_range = f"{model_id:02}_R2Net", 1.0
        model = R2Net(in_channels=3,out_channels=3,
                    feature_channels=48,upscale=4,bias=False,rep='plain')
        model_path = os.path.join('model_zoo', 'team29_R2Net.pth')#os.path.join('model_zoo', 'old.pth')
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 34:
        from models.team34_craft import CRAFT
        name, data_range = f"{model_id:02}_craft", 255.0
        model_path = os.path.join('model_zoo', 'team34_craft.pth')
        model = CRAFT(upscale=4, img_range=1., depths=[2, 2, 2, 2], resi_connection='1conv')
        loadnet = torch.load(model_path)
        if 'params_ema' in loadnet:
            keyname = 'params_ema'
        else:
            keyname = 'params'
        model.load_state_dict(loadnet[keyname], strict=True)
    elif model_id == 38:
        import importlib
        model_module = importlib.import_module(f'models.team{model_id:02}_SPAN')
        name, data_range = f"{model_id:02}_SPAN", 1.0
        model = getattr(model_module, f'SPAN30')(3, 3, upscale=4, feature_channels=28).eval().to(device)
        model_path = os.path.join('model_zoo', f'team38_span_ch28_slim.pth')
        stat_dict = torch.load(model_path)
        model.load_state_dict(stat_dict, strict=False)
    elif model_id == 41:
        from models.team41_HARN import HARN
        name, data_range = f"{model_id:01}_HARN", 1.0
        model_path = os.path.join('model_zoo', 'team41_harn.pth')
        model = HARN()
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 5:
        from models.team05_Short import Short
        name, data_range = f"{model_id:01}_Short", 1.0
        model_path = os.path.join('model_zoo', 'team05_short.pth')
        model = Short()
        model.load_state_dict(torch.load(model_path), strict=True)
    # elif model_id == 1:
    #     from models.team[Your_Team_ID]_[Model_Name] import [Model_Name]
''' + chain_end() + '''

def main(args):
    utils_logger.logger_info("NTIRE2024-EfficientSR", log_path="NTIRE2024-EfficientSR.log")
'''

# The 2022 style: no fvcore, no year named, the IMDN baseline at -1, a tile set by a branch, `if` without elif.
KIT_2022 = '''import os
import torch


def select_model(args, device):
    model_id = args.model_id
    tile = None
    if model_id == -1:
        name, data_range = f"{model_id:02}_IMDN_baseline", 1.0
        from models.IMDN import IMDN
        model = IMDN()
        model.load_state_dict(torch.load(os.path.join('model_zoo', 'imdn_baseline.pth')), strict=True)
    if model_id == 2:
        from models.team02_VR import VRNet
        name, data_range = f"{model_id:02}_VRNet", 255
        model = VRNet()
        model.load_state_dict(torch.load(os.path.join('model_zoo', 'team02_vr.pth'))['params'], strict=True)
        tile = 256
    if model_id == 3:
        from models.team03_Net import Net
        name, data_range = "03_Net", 1.0
        model = Net()
        model.load_state_dict(torch.load('model_zoo/team03_net.pth')['state_dict']['model'])
    if model_id == 3:
        from models.team03_Net import Net
        model = Net()
    model.eval()
    for k, v in model.named_parameters():
        v.requires_grad = False
    model = model.to(device)
    return model, name, data_range, tile
'''


# The 2023 style: the tile set after the chain by model id, a class in a sub-package, the `module.` prefix stripped
# by a loop, a padded results key, and a factory function of the team's file.
KIT_2023 = '''import os.path
import torch
from utils import utils_logger


def select_model(args, device):
    model_id = args.model_id
    if model_id == 0:
        from models.team00_RFDN import RFDN
        name, data_range = f"{model_id:02}_RFDN_baseline", 255.0
        model_path = os.path.join('model_zoo', 'team00_rfdn.pth')
        model = RFDN()
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 2:
        from models.team02_nlffc.NLFFC import Netw
        name, data_range = f"{model_id:02}_NLFFC", 255.0
        model_path = os.path.join('model_zoo', 'team02_nlffc.pth')
        model = Netw()
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 14:
        from models.team14_arfdn import ARFDN
        name, data_range = f"{model_id:02}_ARFDN", 1.0
        model_path = os.path.join('model_zoo', 'team14_arfdn.pth')
        model = ARFDN()
        state_dict = torch.load(model_path)
        new_state_dict = dict()
        for k, v in state_dict.items():
            new_state_dict[k.replace("module.", "")] = v
        model.load_state_dict(new_state_dict, strict=True)
    elif model_id == 15:
        from models.team15_SAFMN import SAFMN
        name, data_range = f"{model_id:16}_SAFMN", 1.0
        model_path = os.path.join('model_zoo', 'team15_SAFMN.pth')
        model = SAFMN(dim=36, n_blocks=8, ffn_scale=2.0, upscaling_factor=4)
        model.load_state_dict(torch.load(model_path)['params'], strict=True)
    elif model_id == 34:
        from models.team34_esan import make_model
        name, data_range = f"{model_id:02}_ESAN", 255.0
        model_path = os.path.join('model_zoo', 'team34_esan.pt')
        model = make_model(1) #.to(torch.device('cuda'))
        model.load_state_dict(torch.load(model_path), strict=True)
''' + chain_end("256 if model_id == 2 else None") + '''

def main(args):
    utils_logger.logger_info("NTIRE2023-EfficientSR", log_path="NTIRE2023-EfficientSR.log")
'''
ESAN_FILE = '''from torch import nn


class ESAN(nn.Module):
    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.up(self.conv(x))


def make_model(version: int) -> ESAN:
    return ESAN(4)
'''

def write_kit(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "test_demo.py"
    path.write_text(text)
    return path


def spec_cli(*argv: str) -> tuple[int, str, str]:
    """The ``spec`` subcommand through its own parser (as ``python -m esrkit.submission spec`` will run it)."""
    parser = argparse.ArgumentParser(prog="python -m esrkit.submission")
    add_spec_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["spec", *argv])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_spec_command(args)
    return rc, out.getvalue(), err.getvalue()


def tables(text: str) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """The spec's top level and its active ``[[team]]`` tables by team number, as tomllib reads them."""
    data = tomllib.loads(text)
    return data, {t["team"]: t for t in data.get("team", [])}


def commented(text: str, model_id: int) -> str:
    """The commented-out block of ``model_id``: from its heading to the next blank line."""
    start = text.index(f"# model_id {model_id} (")
    end = text.find("\n\n", start)
    return text[start:] if end < 0 else text[start:end]


def uncommented_table(block: str) -> dict[str, Any]:
    """The keys of a commented-out table that were read (its FILL IN lines left out), as tomllib reads them."""
    lines = [line[2:] for line in block.splitlines() if line.startswith("# ") and "FILL IN" not in line]
    start = lines.index("[[team]]")
    return tomllib.loads("\n".join(lines[start:]))["team"][0]


# --- the 2025 style -------------------------------------------------------------------------------


@pytest.fixture()
def kit2025(tmp_path: Path) -> Path:
    return write_kit(tmp_path / "NTIRE2025_ESR", KIT_2025)


def test_2025_tables_read_completely(kit2025: Path) -> None:
    spec_dir = kit2025.parent
    data, teams = tables(render_spec(read_select_model(kit2025), base=spec_dir))
    assert data["year"] == 2025
    assert sorted(teams) == [0, 16, 17, 23, 24, 28, 40, 42, 44, 50, 51, 361]
    assert teams[42]["name"] == "[FEAN]" and teams[42]["strict"] is False  # the kit's name, kept exactly
    # the team's own loading method: the kit calls it with the weights path
    assert teams[40] == {"team": 40, "name": "MambaIRv2LightModel", "model_file": "models/team40_mambairv2light.py",
                         "class_name": "MambaIRv2LightModel", "weights": "model_zoo/team40_mambairv2light.pth",
                         "data_range": 1.0, "load_method": "load_weights"}
    assert teams[0] == {"team": 0, "name": "EFDN_baseline", "model_file": "models/team00_EFDN.py", "class_name": "EFDN",
                        "weights": "model_zoo/team00_EFDN.pth", "data_range": 1.0}
    assert teams[16] == {"team": 16, "name": "SCMSR", "model_file": "models/team16_SCMSR.py", "class_name": "SCMSR",
                         "weights": "model_zoo/team16_SCMSR.pth", "state_key": "params_ema", "data_range": 1.0}
    assert teams[17] == {"team": 17, "name": "FSANet", "model_file": "models/team17_FSANet_arch.py",
                         "class_name": "FSANet",
                         "init_kwargs": {"fea_ch": 56, "conv": "EPartialBSConvU", "rgb_mean": [0.4488, 0.4371, 0.4040],
                                         "channel_reduction_rate": 2, "bias": False},
                         "weights": "model_zoo/team17_FSANet.pth", "state_key": "params", "data_range": 1.0,
                         "post_load": "each:switch_deploy"}
    assert teams[23] == {"team": 23, "name": "DSCF", "model_file": "models/team23_DSCF.py", "class_name": "DSCF",
                         "init_args": [3, 3], "init_kwargs": {"feature_channels": 26, "upscale": 4},
                         "weights": "model_zoo/team23_DSCF.pth", "strict": False, "data_range": 1.0}
    assert teams[24] == {"team": 24, "name": "SPANF", "model_file": "models/team24_SPANF.py", "class_name": "SPANF",
                         "init_args": [3, 3], "init_kwargs": {"upscale": 4, "feature_channels": 32},
                         "weights": "model_zoo/team24_spanf.pth", "state_key": "params_ema", "data_range": 1.0}
    assert teams[28] == {"team": 28, "name": "BVI_SRF", "model_file": "models/team28_bvi_srf_arch.py",
                         "class_name": "BVI_SRF", "weights": "model_zoo/team28_bvi_srfnet_g.pth", "state_key": "params",
                         "data_range": 1.0}
    assert teams[44] == {"team": 44, "name": "SPAN", "model_file": "models/team44_SPAN.py", "class_name": "SPAN",
                         "init_kwargs": {"feature_channels": 48, "img_range": 1.0},
                         "weights": "model_zoo/team44_SPANx4.pth", "state_key": "params", "data_range": 1.0,
                         "post_load": "repa"}
    assert teams[361] == {"team": 361, "name": "espan", "model_file": "models/team36_espan.py", "class_name": "ESPAN",
                          "init_kwargs": {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 32, "upscale": 4,
                                          "bias": True, "use_fast_op": True},
                          "weights": "model_zoo/team36_espan.pth", "data_range": 1.0}
    for team, variant in ((50, 0), (51, 1)):  # one `model_id in (50, 51)` branch, read once per id
        assert teams[team] == {"team": team, "name": "Twin", "model_file": "models/team50_Twin.py", "class_name": "Twin",
                               "init_kwargs": {"variant": variant}, "weights": f"model_zoo/team{team}_twin.pth",
                               "strict": False, "data_range": 255.0}


def test_2025_unreadable_branches_are_listed_with_what_to_fill_in(kit2025: Path) -> None:
    reading = read_select_model(kit2025)
    by_id = {b.model_id: b for b in reading.branches}
    assert [b.model_id for b in reading.branches if not b.complete] == [1, 30, 52, 53]
    assert "empty (`pass`)" in by_id[1].missing[0].reason
    assert "calls build_team30, defined in the kit file" in by_id[30].missing[0].reason
    assert by_id[30].open_keys() == ["model_file", "class_name", "weights"]
    assert "2 networks are built" in by_id[52].missing[0].reason
    assert "the `for` statement" in by_id[53].missing[0].reason and by_id[53].open_keys() == ["weights"]
    # the second `elif model_id == 17` is never reached: a note on the first, not a second table
    assert any("never reached" in n for n in by_id[17].notes) and [b.model_id for b in reading.branches].count(17) == 1

    text = render_spec(reading, base=kit2025.parent)
    block = commented(text, 53)
    assert "# weights =   # FILL IN" in block
    assert uncommented_table(block) == {"team": 53, "name": "LoopNet", "model_file": "models/team53_Loop.py",
                                        "class_name": "LoopNet", "data_range": 1.0}
    assert uncommented_table(commented(text, 30)) == {"team": 30, "name": "Helper", "data_range": 1.0}
    assert "FILL IN" not in "".join(line for line in text.splitlines() if not line.startswith("#"))


def test_2025_command_writes_a_spec_that_loads(kit2025: Path) -> None:
    out = kit2025.parent / "teams.toml"
    rc, stdout, _ = spec_cli("--from_select_model", str(kit2025), "--out", str(out))
    assert rc == 1  # some branches are left to complete by hand
    for model_id in (1, 30, 52, 53):
        assert f"model_id {model_id} (line" in stdout
    assert f"wrote {out}" in stdout
    spec = load_spec_file(out)
    assert spec.year == 2025 and not spec.invalid
    assert [t.team for t in spec.teams] == [0, 16, 17, 23, 24, 28, 40, 44, 361, 50, 51, 42]
    # the kit's name "[FEAN]" is kept as given; the results key spells it safely, and the command says so
    fean = spec.teams[-1]
    assert fean.name == "[FEAN]" and "the results key will be 42_FEAN" in stdout
    fsanet = spec.teams[2]
    assert fsanet.model_file == kit2025.parent / "models" / "team17_FSANet_arch.py"
    assert fsanet.weights == kit2025.parent / "model_zoo" / "team17_FSANet.pth"


# --- the 2024 and 2022 styles ---------------------------------------------------------------------


def test_2024_style(tmp_path: Path) -> None:
    kit = write_kit(tmp_path / "kit", KIT_2024)
    reading = read_select_model(kit)
    data, teams = tables(render_spec(reading, base=kit.parent))
    assert data["year"] == 2024
    assert teams[0] == {"team": 0, "name": "RLFN_baseline", "model_file": "models/team00_RLFN.py",
                        "class_name": "RLFN_Prune", "weights": "model_zoo/team00_rlfn.pth", "data_range": 255.0}
    assert teams[23]["state_key"] == "params_ema" and teams[23]["init_kwargs"] == {
        "dim": 36, "n_blocks": 6, "ffn_scale": 1.5, "upscaling_factor": 4}
    assert teams[29] == {"team": 29, "name": "R2Net", "model_file": "models/team29_R2Net.py", "class_name": "R2Net",
                         "init_kwargs": {"in_channels": 3, "out_channels": 3, "feature_channels": 48, "upscale": 4,
                                         "bias": False, "rep": "plain"},
                         "weights": "model_zoo/team29_R2Net.pth", "data_range": 1.0}
    assert teams[38] == {"team": 38, "name": "SPAN", "model_file": "models/team38_SPAN.py", "class_name": "SPAN30",
                         "init_args": [3, 3], "init_kwargs": {"upscale": 4, "feature_channels": 28},
                         "weights": "model_zoo/team38_span_ch28_slim.pth", "strict": False, "data_range": 1.0}
    assert teams[41]["name"] == "HARN"  # f"{41:01}" is "41": the results key is 41_HARN as a spec writes it
    by_id = {b.model_id: b for b in reading.branches}
    assert [b.model_id for b in reading.branches if not b.complete] == [5]
    # `head_dim= None`: TOML has no null, the spec names the keyword in init_none
    assert teams[18]["init_kwargs"] == {"ngrams": [2, 2, 2, 2], "embed_dim": 64, "mlp_ratio": 2.0}
    assert teams[18]["init_none"] == ["head_dim"]
    # `if 'params_ema' in loadnet: keyname = 'params_ema' else: keyname = 'params'`: both keys, in that order
    assert teams[34]["weights"] == "model_zoo/team34_craft.pth"
    assert teams[34]["state_key"] == ["params_ema", "params"]
    assert "'5_Short' is not NN_Name" in by_id[5].missing[0].reason  # f"{5:01}": a key no spec can write


def test_2022_style(tmp_path: Path) -> None:
    kit = write_kit(tmp_path / "kit", KIT_2022)
    reading = read_select_model(kit)
    assert reading.year is None and "names no NTIRE year" in reading.year_reason
    by_id = {b.model_id: b for b in reading.branches}
    assert [b.model_id for b in reading.branches] == [-1, 2, 3]
    assert "negative" in by_id[-1].missing[0].reason and by_id[-1].keys == {}
    assert by_id[2].keys["data_range"] == 255.0 and by_id[2].keys["state_key"] == "params"
    assert [m.reason for m in by_id[2].missing] == ["tile = 256: a spec has no tile; measure this team with --tile 256"]
    # two separate `if model_id == 3` statements both run: not clear which builds it
    assert by_id[3].keys["state_key"] == "state_dict.model"
    assert "also selected at line" in by_id[3].missing[0].reason
    text = render_spec(reading, base=kit.parent)
    assert "# year: not inferred" in text and "\nyear" not in text
    data = tomllib.loads(text)
    assert data == {}  # every table is commented out: nothing is complete


def test_2023_style(tmp_path: Path) -> None:
    kit = write_kit(tmp_path / "kit", KIT_2023)
    (kit.parent / "models").mkdir()
    (kit.parent / "models" / "team34_esan.py").write_text(ESAN_FILE)
    reading = read_select_model(kit)
    assert reading.year == 2023 and reading.year_reason.startswith("inferred: the file names NTIRE2023")
    by_id = {b.model_id: b for b in reading.branches}
    assert [b.model_id for b in reading.branches if not b.complete] == [2, 14, 15]
    assert by_id[0].keys["data_range"] == 255.0
    # `tile = 256 if model_id == 2 else None` after the chain, evaluated for each model id
    assert by_id[2].keys["model_file"] == kit.parent / "models" / "team02_nlffc" / "NLFFC.py"
    assert [m.reason for m in by_id[2].missing] == ["tile = 256: a spec has no tile; measure this team with --tile 256"]
    # the loop that strips `module.` is not followed: the weights are left to fill in
    assert by_id[14].open_keys() == ["weights"] and "`new_state_dict` is set in the `for` statement" in " ".join(
        m.reason for m in by_id[14].missing)
    assert "'              15_SAFMN' is not NN_Name" in by_id[15].missing[0].reason
    # a factory function of the team's file: named by class_name and called as the kit calls it
    assert by_id[34].complete and "make_model is a function of team34_esan.py" in by_id[34].notes[0]
    out = tmp_path / "teams.toml"
    rc, _, _ = spec_cli("--from_select_model", str(kit), "--out", str(out), "--teams", "34")
    (spec,) = load_spec_file(out).teams
    assert rc == 0 and (spec.class_name, spec.init_args, spec.data_range) == ("make_model", (1,), 255.0)
    assert type(resolve(spec).build()).__name__ == "ESAN"

def test_year_flag_overrides_and_says_so(tmp_path: Path) -> None:
    kit = write_kit(tmp_path / "kit", KIT_2024)
    assert read_select_model(kit, year=2025).year_reason == "from --year; the file itself suggests 2024"
    assert read_select_model(write_kit(tmp_path / "k22", KIT_2022), year=2022).year == 2022


# --- the constructions every official select_model uses, read and loaded -----------------------------

# Team files for these tests: a network whose layers depend on a `head_dim` that may be None, and one that loads
# its own weights file (its checkpoint format is not one the kit's loader knows).
HEADED_NET = '''import torch
from torch import nn


class Headed(nn.Module):
    def __init__(self, in_ch=3, head_dim=12, scale=4):
        super().__init__()
        width = 3 * scale * scale if head_dim is None else head_dim
        self.conv = nn.Conv2d(in_ch, width, 3, padding=1)
        self.tail = nn.Identity() if head_dim is None else nn.Conv2d(width, 3 * scale * scale, 1)
        self.up = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.up(self.tail(self.conv(x)))
'''
SELF_LOADING_NET = TOY_NET + '''

    def load_weights(self, path):
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["net"], strict=True)
'''

# A select_model written for these tests in the official style, one branch per construction.
KIT_CONSTRUCTIONS = '''import os.path
import torch


def select_model(args, device):
    model_id = args.model_id
    if model_id == 1:
        from models.team01_Headed import Headed
        name, data_range = f"{model_id:02}_Headed", 1.0
        model_path = os.path.join('model_zoo', 'team01_Headed.pth')
        model = Headed(in_ch=3, head_dim=None)
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 2:
        from models.team02_Headed import Headed
        name, data_range = f"{model_id:02}_Headed", 1.0
        model = Headed(3, None, 4)
        model.load_state_dict(torch.load(os.path.join('model_zoo', 'team02_Headed.pth')), strict=True)
    elif model_id == 3:
        from models.team03_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        loadnet = torch.load(os.path.join('model_zoo', 'team03_Toy.pth'))
        if 'params_ema' in loadnet:
            keyname = 'params_ema'
        else:
            keyname = 'params'
        model.load_state_dict(loadnet[keyname], strict=True)
    elif model_id == 4:
        from models.team04_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        loadnet = torch.load(os.path.join('model_zoo', 'team04_Toy.pth'))
        keyname = 'params_ema' if 'params_ema' in loadnet.keys() else 'params'
        model.load_state_dict(loadnet[keyname], strict=True)
    elif model_id == 5:
        from models.team05_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        loadnet = torch.load(os.path.join('model_zoo', 'team05_Toy.pth'))
        model.load_state_dict(loadnet.get('params_ema', loadnet['params']), strict=True)
    elif model_id == 6:
        from models.team06_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        ckpt = torch.load(os.path.join('model_zoo', 'team06_Toy.pth'))
        if 'params_ema' in ckpt:
            ckpt = ckpt['params_ema']
        elif 'params' in ckpt:
            ckpt = ckpt['params']
        model.load_state_dict(ckpt, strict=True)
    elif model_id == 7:
        from models.team07_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        loadnet = torch.load(os.path.join('model_zoo', 'team07_Toy.pth'))
        if 'params_ema' not in loadnet:
            print('no EMA weights')
            model.load_state_dict(loadnet['params'], strict=True)
        else:
            model.load_state_dict(loadnet['params_ema'], strict=True)
    elif model_id == 8:
        from models.team08_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        loadnet = torch.load(os.path.join('model_zoo', 'team08_Toy.pth'))
        if 'params' in loadnet:
            state = loadnet['params']
        else:
            raise KeyError('params')
        model.load_state_dict(state, strict=True)
    elif model_id == 9:
        from models.team09_SelfLoading import Toy
        name, data_range = f"{model_id:02}_SelfLoading", 1.0
        model = Toy()
        model.load_weights(os.path.join('model_zoo', 'team09_SelfLoading.pth'))
    elif model_id in (10, 11):
        from models.team10_Toy import Toy
        name, data_range = f"{model_id:02}_[Toy]", 1.0
        if model_id == 10:
            model_path = os.path.join('model_zoo', 'team10_Toy.pth')
        else:
            model_path = os.path.join('model_zoo', 'team11_Toy.pth')
        model = Toy()
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 12:
        from models.team12_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        loadnet = torch.load(os.path.join('model_zoo', 'team12_Toy.pth'))
        if 'params_ema' in loadnet:
            keyname = 'params'
        else:
            keyname = 'params_ema'
        model.load_state_dict(loadnet[keyname], strict=True)
    elif model_id == 13:
        from models.team13_Toy import Toy
        name, data_range = f"{model_id:02}_Toy", 1.0
        model = Toy()
        model.set_mode('fast')
        model.load_state_dict(torch.load(os.path.join('model_zoo', 'team13_Toy.pth')), strict=True)
    elif model_id == 14:
        pass
''' + chain_end()

CHOSEN_KEYS = {3: ["params_ema", "params"], 4: ["params_ema", "params"], 5: ["params_ema", "params"],
               6: ["params_ema", "params", ""], 7: ["params_ema", "params"], 8: "params"}


def _toy_state(seed: int) -> dict[str, Any]:
    import torch

    namespace: dict[str, Any] = {}
    exec(TOY_NET, namespace)
    torch.manual_seed(seed)
    return namespace["Toy"]().state_dict()


@pytest.fixture()
def constructions(tmp_path: Path) -> Path:
    """The kit of :data:`KIT_CONSTRUCTIONS` with its team files (those with a toy network) beside it."""
    import torch

    kit = write_kit(tmp_path / "kit", KIT_CONSTRUCTIONS)
    for number in (3, 4, 5, 6, 7, 8, 10, 12, 13):
        toy_team(kit.parent, f"team{number:02}_Toy.py")
    toy_team(kit.parent, "team09_SelfLoading.py", SELF_LOADING_NET)
    torch.save({"net": _toy_state(9)}, kit.parent / "model_zoo" / "team09_SelfLoading.pth")
    torch.save(_toy_state(11), kit.parent / "model_zoo" / "team11_Toy.pth")
    namespace: dict[str, Any] = {}
    exec(HEADED_NET, namespace)
    for number in (1, 2):  # the weights of Headed(head_dim=None): it has no `tail` conv
        (kit.parent / "models" / f"team{number:02}_Headed.py").write_text(HEADED_NET)
        torch.manual_seed(number)
        state = namespace["Headed"](head_dim=None).state_dict()
        torch.save(state, kit.parent / "model_zoo" / f"team{number:02}_Headed.pth")
    return kit


def test_every_construction_is_read_and_what_is_not_is_one_line_per_model_id(constructions: Path) -> None:
    out = constructions.parent / "teams.toml"
    rc, stdout, _ = spec_cli("--from_select_model", str(constructions), "--out", str(out), "--year", "2025")
    assert rc == 1  # 12 and 13 are left to complete, 14 is empty
    _, teams = tables(out.read_text())
    assert sorted(teams) == list(range(1, 12))
    assert teams[1]["init_kwargs"] == {"in_ch": 3} and teams[1]["init_none"] == ["head_dim"]
    # a positional None: it and the arguments after it by keyword, as Headed's signature names them
    assert (teams[2]["init_args"], teams[2]["init_kwargs"], teams[2]["init_none"]) == ([3], {"scale": 4}, ["head_dim"])
    for team, keys in CHOSEN_KEYS.items():
        assert teams[team]["state_key"] == keys, team
    assert teams[9]["load_method"] == "load_weights" and teams[9]["weights"] == "model_zoo/team09_SelfLoading.pth"
    assert "state_key" not in teams[9] and "strict" not in teams[9]
    assert teams[10]["name"] == teams[11]["name"] == "[Toy]"  # kept as given; the key spells it safely
    assert (teams[10]["weights"], teams[11]["weights"]) == ("model_zoo/team10_Toy.pth", "model_zoo/team11_Toy.pth")
    unread = [line for line in stdout.splitlines() if "fill in" in line]
    assert [line.split(" (line")[0].strip() for line in unread] == ["model_id 12", "model_id 13", "model_id 14"]
    assert "takes something else than that key" in unread[0] and "model.set_mode('fast')" in unread[1]
    assert "empty (`pass`)" in unread[2]


def test_the_generated_spec_builds_and_loads_as_the_kit_file_would(constructions: Path) -> None:
    import torch

    out = constructions.parent / "teams.toml"
    spec_cli("--from_select_model", str(constructions), "--out", str(out), "--year", "2025")
    specs = {t.team: t for t in load_spec_file(out).teams}
    zoo = constructions.parent / "model_zoo"
    # None reaches the constructor: Headed(head_dim=None) has no `tail` conv, and its weights load strictly
    for team in (1, 2):
        entry = resolve(specs[team])
        assert entry.bound_arguments() == {"in_ch": 3, "head_dim": None} | ({"scale": 4} if team == 2 else {})
        loaded = entry.load()
        assert isinstance(loaded.model.tail, torch.nn.Identity) and loaded.report.strict
    # the state key the team's code would take: the first the checkpoint holds, said in the load report
    plain, ema = _toy_state(1), _toy_state(2)
    for team, keys in CHOSEN_KEYS.items():
        entry = resolve(specs[team])
        files = [({"params": plain}, plain, "params"), ({"params": plain, "params_ema": ema}, ema, "params_ema")]
        if team == 6:
            files.append((plain, plain, None))  # a bare state_dict: the file itself
        for content, expected, chosen in files:
            if team == 8 and chosen == "params_ema":
                expected, chosen = plain, "params"  # team 8 takes 'params' whatever else the file holds
            torch.save(content, zoo / f"team{team:02}_Toy.pth")
            loaded = entry.load()
            assert all(torch.equal(v, expected[k]) for k, v in loaded.model.state_dict().items()), (team, chosen)
            assert loaded.report.state_key == chosen, team
            if isinstance(keys, list):
                assert "as the team's code chooses" in loaded.report.describe()
        torch.save({"weights": plain}, zoo / f"team{team:02}_Toy.pth")  # none of the keys: as the kit file, an error
        with pytest.raises(KitError, match="holds none of 'params_ema', 'params'" if team != 8 else "has no 'params'"):
            entry.load()
    # the team's own method loads its own format (the kit's loader does not know the "net" wrapper)
    loaded = resolve(specs[9]).load()
    assert all(torch.equal(v, _toy_state(9)[k]) for k, v in loaded.model.state_dict().items())
    assert loaded.report.method == "load_weights" and "team's own model.load_weights(path)" in loaded.report.describe()
    # a name with brackets: the results key spells it safely, the name is kept for display
    entry = resolve(specs[10])
    assert (entry.key, entry.display_name, entry.name) == ("10_Toy", "10_[Toy]", "[Toy]")


def test_a_kit_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    kit = tmp_path / "kit" / "test_demo.py"
    kit.parent.mkdir()
    kit.write_bytes(b"\xef\xbb\xbf" + KIT_2024.encode())
    assert [b.model_id for b in read_select_model(kit).branches if b.complete] == [0, 18, 23, 29, 34, 38, 41]


# --- the command ----------------------------------------------------------------------------------


def test_command_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    kit = write_kit(tmp_path / "kit", KIT_2024)
    out = tmp_path / "specs" / "teams.toml"
    out.parent.mkdir()
    out.write_text("# the organiser's own edits\n")
    with pytest.raises(KitError, match="exists: pass --force"):
        spec_cli("--from_select_model", str(kit), "--out", str(out))
    assert out.read_text() == "# the organiser's own edits\n"
    rc, stdout, _ = spec_cli("--from_select_model", str(kit), "--out", str(out), "--force", "--teams", "0", "29")
    assert rc == 0 and "2 model ids, 2 read completely" in stdout
    spec = load_spec_file(out)
    assert [t.team for t in spec.teams] == [0, 29]
    assert spec.teams[0].model_file.resolve() == (kit.parent / "models" / "team00_RLFN.py").resolve()
    assert 'model_file = "../kit/models/team00_RLFN.py"' in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["teams.toml"]  # no temporary file left beside it


def test_command_prints_to_stdout_with_absolute_paths(tmp_path: Path) -> None:
    kit = write_kit(tmp_path / "kit", KIT_2024)
    rc, stdout, stderr = spec_cli("--from_select_model", str(kit), "--teams", "23")
    assert rc == 0 and "1 read completely" in stderr
    (table,) = tomllib.loads(stdout)["team"]
    assert table["weights"] == (kit.parent / "model_zoo" / "team23_safmnpp.pth").as_posix()


def test_command_errors_name_the_fix(tmp_path: Path) -> None:
    kit = write_kit(tmp_path / "kit", KIT_2024)
    with pytest.raises(KitError, match=r"--teams 7: not a model id .* \(it has: 0, 5, 18, 23, 29, 34, 38, 41\)"):
        spec_cli("--from_select_model", str(kit), "--teams", "7", "23")
    with pytest.raises(KitError, match="no such file"):
        spec_cli("--from_select_model", str(tmp_path / "absent.py"))
    no_function = write_kit(tmp_path / "nf", "def main():\n    pass\n")
    with pytest.raises(KitError, match="has no top-level function select_model"):
        spec_cli("--from_select_model", str(no_function))
    no_chain = write_kit(tmp_path / "nc", "def select_model(args, device):\n    return build(args)\n")
    with pytest.raises(KitError, match="no `if model_id == N:` chain"):
        spec_cli("--from_select_model", str(no_chain))
    broken = write_kit(tmp_path / "br", "def select_model(args, device):\n    if model_id == 1\n")
    with pytest.raises(KitError, match="syntax error"):
        spec_cli("--from_select_model", str(broken))


def test_the_kit_file_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"open({str(marker)!r}, 'w').close()\n" + KIT_2024
    kit = write_kit(tmp_path / "kit", text)
    assert read_select_model(kit).branches and not marker.exists()


# --- the TOML writer, against tomllib -------------------------------------------------------------


@pytest.mark.parametrize("value", [
    'plain', 'quote " and backslash \\ and tab \t', "new\nline\r", "\x00\x1f\x7f controls", "unicode: é ∑ 😀",
    1, -3, 0, 1.0, 1e-05, 0.4040, 2.5e20, float("inf"), -float("inf"), True, False,
    [], [1, 2, 3], [1, "a", [2.0, False]], {}, {"a": 1, "with space": "x", "b": {"c": [1, 2]}},
])
def test_toml_values_round_trip_through_tomllib(value: Any) -> None:
    assert tomllib.loads(f"k = {toml_value(value)}\n")["k"] == value


def test_toml_has_no_null() -> None:
    with pytest.raises(TypeError):
        toml_value(None)


# --- acceptance: the five NTIRE 2025 submissions --------------------------------------------------

OFFICIAL_STYLE_FIVE = '''import os.path
import logging
import torch
import argparse
import json
import glob

from pprint import pprint
from fvcore.nn import FlopCountAnalysis
from utils.model_summary import get_model_activation, get_model_flops
from utils import utils_logger
from utils import utils_image as util


def select_model(args, device):
    # Model ID is assigned according to the order of the submissions.
    # Different networks are trained with input range of either [0,1] or [0,255]. The range is determined manually.
    model_id = args.model_id
    if model_id == 7:
        from models.team07_NanoSR import NanoSR_inference
        name, data_range = f"{model_id:02}_NanoSR", 1.0
        model_path = os.path.join('model_zoo', 'team07_NanoSR.pth')
        model = NanoSR_inference(3, 3)
        model.load_state_dict(torch.load(model_path), strict=True)
    elif model_id == 8:
        from models.team08_FRnet import FRnet
        name, data_range = f"{model_id:02}_FRnet", 1.0
        model_path = os.path.join('model_zoo', 'team08_FRnet.pth')
        model = FRnet()
        state_dict = torch.load(model_path)
        model.load_state_dict(state_dict['params_ema'], strict=False)
    elif model_id == 10:
        from models.team10_MoeASR import MixtureofAttention_Multiply
        name, data_range = f"{model_id:02}_MoeASR", 1.0
        model_path = os.path.join('model_zoo', 'team10_MoASR.pth')
        model = MixtureofAttention_Multiply(dim=36, kernel_size=7, num_experts=3, topk=1, scale=4, num_blocks=9)
        model.load_state_dict(torch.load(model_path)["params_ema"], strict=True)
    elif model_id == 15:
        from models.team15_DIPNet_slim_v2 import DIPNet_slim_v2
        name, data_range = f"{model_id:02}_DIPNet_slim_v2", 1.0
        model_path = os.path.join('model_zoo', 'team15_DIPNet_slim_v2.pt')
        model = DIPNet_slim_v2(3, 3, upscale=4, feature_channels=32)
        model.load_state_dict(torch.load(model_path), strict=True)
''' + FSANET_BRANCH + chain_end() + '''

def main(args):
    utils_logger.logger_info("NTIRE2025-EfficientSR", log_path="NTIRE2025-EfficientSR.log")
'''


def _entry_facts(entry) -> dict[str, Any]:  # noqa: ANN001
    return dict(cls=entry.arch.__name__, source=Path(entry.source).resolve(), args=tuple(entry.args),
                kwargs=dict(entry.kwargs), weights=Path(entry.weights).resolve(), state_key=entry.state_key,
                strict=entry.strict, data_range=entry.data_range, post_load=entry.post_load, team=entry.team,
                name=entry.name, key=entry.key)


def test_five_2025_teams_reproduce_the_hand_written_spec_and_the_published_counts(tmp_path: Path) -> None:
    """The spec made from the official kit's select_model names each team's entry exactly as the hand-written one
    (which tests/test_intake.py measures against every published count); every entry loads its weights, and the two
    cheapest to count give their published counts from the generated spec itself."""
    submissions = require(SHARED / "submissions")
    kit = write_kit(tmp_path / "NTIRE2025_ESR", OFFICIAL_STYLE_FIVE)
    for folder in ("models", "model_zoo"):
        (kit.parent / folder).symlink_to(submissions / folder, target_is_directory=True)
    out = tmp_path / "specs" / "teams.toml"
    rc, stdout, _ = spec_cli("--from_select_model", str(kit), "--out", str(out))
    assert rc == 0, stdout
    generated = load_spec_file(out)
    assert generated.year == 2025
    hand = tmp_path / "hand.toml"
    hand.write_text("year = 2025\n\n" + "".join(organisers_table(team, submissions) for team in TEAMS))
    by_hand = {t.team: t for t in load_spec_file(hand).teams}
    assert [t.team for t in generated.teams] == list(TEAMS)
    with torch_threads(1):
        for spec in generated.teams:
            entry, t = resolve(spec), TEAMS[spec.team]
            assert _entry_facts(entry) == _entry_facts(resolve(by_hand[spec.team])), spec.team
            model = entry.load().model
            if spec.team in (8, 15):
                c = count(model, counters=("official", "fvcore"), second_probe=False)
                assert (c.params, c.flops_fvcore, c.num_conv, c.activations) == (
                    t["params"], t["flops"], t["conv"], t["acts"]), spec.team
