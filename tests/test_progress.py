"""Progress in job logs is line-based; bars only on a terminal (issue 27.8)."""

import sys

from oacl import progress as prog
from oacl.evaluate.loc_markdown import markdown_table


def test_log_progress_is_one_line_per_ten_percent(capsys, monkeypatch):
    monkeypatch.setattr(prog, "SECONDS", 1e9)
    assert list(prog.progress(range(100), desc="refine", unit="img")) == list(range(100))
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert len(lines) == 10 and lines[0].startswith("refine: 10/100 img (10 %)")
    assert lines[-1].startswith("refine: 100/100 img (100 %)")
    bar = prog.progress(total=3, desc="chunks", unit="chunk", disable=True)
    bar.update()
    bar.close()
    assert capsys.readouterr().err == ""


def test_log_progress_also_by_time(capsys, monkeypatch):
    monkeypatch.setattr(prog, "SECONDS", 0.0)
    bar = prog.progress(total=1000, desc="cam", unit="batch")
    for _ in range(3):
        bar.update()
    bar.close()  # the final count is not repeated
    assert [line.split(",")[0] for line in capsys.readouterr().err.splitlines()] == [
        f"cam: {i}/1000 batch ({i / 10:.0f} %)" for i in (1, 2, 3)
    ]


def test_a_terminal_gets_a_bar(monkeypatch):
    from tqdm import tqdm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = prog.progress(range(3), desc="x")
    assert isinstance(bar, tqdm)
    bar.close()


def test_localization_log_has_no_carriage_returns_and_no_repeated_rows(tmp_path, capsys):
    """The localisation command's log used to hold its tqdm bar as one \\r-joined line."""
    from test_localization import _dataset

    from oacl.cli import main

    manifest, masks, boxes = _dataset(tmp_path)
    argv = ["evaluate", "localization", "--cfg", "{}", "--manifest", str(manifest)]
    assert (
        main(
            [*argv, "--masks", str(masks), "--boxes", str(boxes), "--out", str(tmp_path / "o.json")]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "\r" not in out.err + out.out and "localization: 3/3 img (100 %)" in out.err
    # one object per image: box-union IoU is box mIoU, the table shows the row once
    one = {
        "box_miou": 0.5,
        "box_union_iou": 0.5,
        "box_miou_nocrf": 0.25,
        "box_union_iou_nocrf": 0.25,
    }
    table = markdown_table({"contracam": one, "gaussian": one})
    assert "box mIoU (CRF boxes)" in table and "box-union" not in table
    two = dict(one, box_union_iou=0.75)
    assert "box-union IoU (CRF boxes)" in markdown_table({"contracam": two, "gaussian": one})
