"""The kernel profile (``python -m benchmarks.kernel_profile``): its table and its usage errors."""

from __future__ import annotations

import re

import pytest

from benchmarks import kernel_profile
from sparse_reg.backends import _cpu_kernel


@pytest.mark.skipif(not _cpu_kernel.available(), reason="the kernel profile needs the fast extra (numba)")
def test_the_table_has_a_row_per_class_count(capsys):
    assert kernel_profile.main(["--classes", "10,300", "--logits", "6000", "--rounds", "2",
                                "--setting", "plain"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"\| \d", line)]
    assert [row.split("|")[1:3] for row in rows] == [[" 10 ", " 600 "], [" 300 ", " 20 "]]
    for row in rows:
        ns_per_row, ns_per_logit = (float(cell) for cell in row.split("|")[4:6])
        classes = int(row.split("|")[1])
        assert ns_per_row > 0 and ns_per_row == pytest.approx(ns_per_logit * classes, rel=0.01)


@pytest.mark.parametrize("argv", [["--classes", "1"], ["--classes", "10,x"], ["--logits", "0"],
                                  ["--rounds", "-3"], ["--setting", "fast"]])
def test_a_bad_argument_exits_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        kernel_profile.parse_args(argv)
    assert stop.value.code == 2
    assert argv[0] in capsys.readouterr().err.splitlines()[-1]
