"""The ``finetune train`` command end to end: argv -> main() -> run directory.

Named test_finetune_cli.py (not test_cli.py) because tests/geomcore/test_cli.py
exists and the test folders are not packages: two test_cli modules collide.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from finetune.__main__ import main
from finetune.tasks import load_task

REPO = Path(__file__).resolve().parents[2]


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_train_end_to_end_on_tiny_ps_role(tmp_path, tiny_data_dir, tiny_model_dir, capsys):
    out = tmp_path / "run"
    argv = ["train", "--task", "ps-role", "--model", str(tiny_model_dir), "--out", str(out),
            "--data-dir", str(tiny_data_dir), "--epochs", "2", "--batch-size", "1",
            "--probe-every", "1", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((out / "results.json").read_text())
    # tiny STREUSLE: dev has p.Locus and p.Goal in 2 sentences (p.Time is part of
    # a multiword expression), test has p.Agent and p.Locus.
    assert results["steps"] == summary["total_steps"] == 4 and results["epochs"] == 2
    assert results["n_train_examples"] == 2 and results["n_test_examples"] == 2
    assert results["test_labels_missing_from_train"] == ["p.Agent"]
    assert results["test_accuracy"] in (0.0, 0.5)  # the p.Agent example is always wrong
    assert 0 <= results["probe_fraction"] <= 1 and results["train_sentences_per_second"] > 0
    geo = _lines(out / "geometry.jsonl")
    assert geo[0]["record"] == "header" and geo[0]["test_labels_missing_from_train"] == ["p.Agent"]
    # probes at steps 0..4, 2 splits, 3 layers each
    assert len(geo) == 1 + 5 * 2 * 3
    assert [r["step"] for r in _lines(out / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert (out / "model" / "config.json").is_file() and (out / "model" / "head.json").is_file()

    # Running the finished command again changes nothing and adds no lines.
    files = ("geometry.jsonl", "metrics.jsonl", "results.json", "checkpoint/state.pt")
    before = {f: (out / f).read_bytes() for f in files}
    assert main(argv) == 0
    assert {f: (out / f).read_bytes() for f in files} == before


def test_max_steps_stops_and_the_same_command_resumes_without_geometry(
    tmp_path, tiny_data_dir, tiny_model_dir, capsys
):
    out = tmp_path / "run"
    base = ["train", "--task", "trec50", "--model", str(tiny_model_dir), "--out", str(out),
            "--data-dir", str(tiny_data_dir), "--epochs", "1", "--batch-size", "1",
            "--no-progress", "--no-save-model", "--no-geometry"]
    assert main(base + ["--max-steps", "2"]) == 1
    assert "run the same command again to resume" in capsys.readouterr().err
    assert not (out / "results.json").exists()
    assert main(base) == 0
    assert json.loads((out / "results.json").read_text())["steps"] == 3
    # --no-geometry: the log holds only its header; accuracy is still measured
    assert [r["record"] for r in _lines(out / "geometry.jsonl")] == ["header"]
    assert [r["step"] for r in _lines(out / "metrics.jsonl")] == [0, 3]


def test_real_corpus_ps_role_with_a_tiny_model(tmp_path, data_dir, tiny_model_dir):
    out = tmp_path / "run"
    argv = ["train", "--task", "ps-role", "--model", str(tiny_model_dir), "--out", str(out),
            "--data-dir", str(data_dir), "--epochs", "1", "--max-train-examples", "60",
            "--max-test-examples", "40", "--no-progress", "--no-save-model"]
    assert main(argv) == 0
    train = load_task("ps-role", "train", data_dir)
    test = load_task("ps-role", "test", data_dir)
    want_missing = sorted(set(test.labels[:40]) - set(train.labels[:60]))
    header = _lines(out / "geometry.jsonl")[0]
    assert header["n_train_examples"] == 60 and header["n_test_examples"] == 40
    assert header["test_labels_missing_from_train"] == want_missing
    n_sent = len(np.unique(train.targets[:60, 0]))
    assert header["n_train_sentences"] == n_sent
    assert header["total_steps"] == -(-n_sent // 32)
    last = [r for r in _lines(out / "geometry.jsonl")[1:] if r["step"] == header["total_steps"]]
    assert {r["split"] for r in last} == {"train", "test"} and len(last) == 2 * 3
    test_rec = next(r for r in last if r["split"] == "test")
    assert sorted(test_rec["labels"]) == sorted(set(test.labels[:40]))
    assert sum(test_rec["counts"]) == 40


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "nope"], "unknown task 'nope'.*ps-role"),
        (["--task", "trec50", "--model", "/no/such/model"], "/no/such/model"),
        (["--task", "trec50", "--batch-size", "0"], "batch_size"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, tiny_data_dir, capsys, extra, message):
    argv = ["train", "--out", str(tmp_path / "o"), "--data-dir", str(tiny_data_dir),
            "--no-progress"] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetune train: error:")
    assert __import__("re").search(message, err), err


def test_missing_data_dir_and_malformed_corpus(tmp_path, tiny_data_dir, tiny_model_dir, capsys,
                                               monkeypatch):
    monkeypatch.delenv("FINETUNE_DATA_DIR", raising=False)
    argv = ["train", "--task", "trec50", "--model", str(tiny_model_dir), "--out",
            str(tmp_path / "o"), "--no-progress"]
    assert main(argv) == 2
    assert "FINETUNE_DATA_DIR" in capsys.readouterr().err

    bad = tiny_data_dir / "trec" / "TREC_10.label"
    bad.write_text("LOC:city Where is the mat ?\nno-label-here\n", encoding="utf-8")
    assert main(argv + ["--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert "TREC_10.label" in err and "line 2" in err

    (tiny_data_dir / "trec" / "TREC_10.label").unlink()
    assert main(argv + ["--data-dir", str(tiny_data_dir)]) == 2
    assert "TREC_10.label" in capsys.readouterr().err


def test_python_dash_m_finetune_lists_both_subcommands():
    proc = subprocess.run([sys.executable, "-m", "finetune", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "embed" in proc.stdout
