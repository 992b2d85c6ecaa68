import os

from nsmc import uploads


def test_write_csv_keeps_its_folder_within_the_size_newest_first(tmp_path):
    for i in range(5):
        (tmp_path / f"run{i}").mkdir()
        path = tmp_path / f"run{i}" / "predictions.csv"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1000 + i, 1000 + i))
    written = uploads.write_csv([{"document": "좋다", "label": "positive"}], tmp_path, keep_bytes=250)
    assert written.read_text(encoding="utf-8-sig").splitlines() == ["document,label", "좋다,positive"]
    kept = sorted(p.name for p in tmp_path.iterdir() if p != written.parent)
    assert kept == ["run3", "run4"]  # the oldest go, emptied folders too
