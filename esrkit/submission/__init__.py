"""Submission kit: ``check`` catches what the organisers would find wrong with an entry, ``package`` makes the upload.

    python -m esrkit.submission check --model_id NAME [--weights PATH] [--data_dir DIR] [--baseline RFDN] [--year 2023]
    python -m esrkit.submission check --model_file models/teamNN_Name.py [--weights model_zoo/teamNN_name.pth]
    python -m esrkit.submission package --model_file models/teamNN_Name.py --data_dir DIR --out teamNN.zip

Modules: :mod:`~esrkit.submission.candidate` (a registered entry or a model file imported by path),
:mod:`~esrkit.submission.layout` (file names and imports), :mod:`~esrkit.submission.check` (the rules),
:mod:`~esrkit.submission.package` (zip, readme.txt, factsheet), :mod:`~esrkit.submission.report` (the table).
"""

from esrkit.submission.candidate import Candidate, from_entry, from_model_file
from esrkit.submission.check import YEARS, CheckOptions, run_check
from esrkit.submission.package import PackageOptions, PackageResult, readme_text, run_package
from esrkit.submission.report import CheckReport, RuleResult, Status

__all__ = [
    "YEARS", "Candidate", "CheckOptions", "CheckReport", "PackageOptions", "PackageResult", "RuleResult", "Status",
    "from_entry", "from_model_file", "readme_text", "run_check", "run_package",
]
