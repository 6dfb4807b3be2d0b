"""`finetune study` end to end on the real corpora with a tiny BERT (smoke preset).

One study runs per module (it is the expensive part); the tests then check
what it wrote, that a rerun recomputes nothing, that an interrupted study
resumes, and that another plan in the same directory is refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from finetune.__main__ import main
from finetune.study import CROSS_SOURCES, PRESETS, unit_names
from tests.finetune.tiny import build_tiny_encoder

TASKS = ("pos", "ps-role", "ps-fxn")
HERE = Path(__file__).resolve().parent
_LOG: dict[str, tuple[str, float]] = {}  # the study's stderr and wall time


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir_module):
    root = tmp_path_factory.mktemp("study")
    model, tok = build_tiny_encoder(root)
    model_dir = root / "tiny-bert"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = root / "out"
    argv = [
        "study",
        "--model",
        str(model_dir),
        "--tasks",
        ",".join(TASKS),
        "--preset",
        "smoke",
        "--data-dir",
        str(data_dir_module),
        "--out",
        str(out),
    ]
    # Progress on, stderr a log (not a terminal): the study's line is in `err`.
    err = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 0
    _LOG["study"] = (err.getvalue(), time.monotonic() - t0)
    return out, argv + ["--no-progress"]


@pytest.fixture(scope="module")
def data_dir_module():
    path = Path(os.environ.get("FINETUNE_DATA_DIR") or HERE.parents[1].parent / "shared" / "data")
    assert path.is_dir(), f"real corpora not found at {path}; set FINETUNE_DATA_DIR"
    return path


def _units(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "units").glob("*.json")}


def test_every_unit_is_written_with_sane_numbers(study):
    out, _ = study
    units = _units(out)
    assert sorted(units) == sorted(unit_names(TASKS))
    # pos and ps-role are in TASKS, so every cross-task source has a row.
    assert {u["source"] for u in units.values() if u["unit"] == "cross"} == set(CROSS_SOURCES)
    smoke = PRESETS["smoke"]
    for name, u in units.items():
        assert u["seconds"] >= 0
        if u["unit"] == "mlp":
            assert len(u["accuracies"]) == smoke.mlp_seeds
            assert all(0.0 <= a <= 1.0 for a in u["accuracies"])
            assert u["mean"] == pytest.approx(np.mean(u["accuracies"]))
            assert u["config"]["hidden"][0] in smoke.mlp_hidden_sizes
            assert u["config"]["alpha"] in smoke.mlp_alphas
            assert u["layer"] == 2  # the tiny BERT has 2 transformer layers
        if u["unit"] == "clusters":
            # tiny model: embedding layer + 2 layers
            assert u["layers"] == [0, 1, 2]
            assert u["n_points"] == min(
                smoke.directprobe_max_points, smoke.max_train_examples[u["task"]]
            )
            # DirectProbe never has fewer clusters than labels, nor more than points.
            assert all(u["n_labels"] <= c <= u["n_points"] for c in u["n_clusters"])
        if u["unit"] == "finetune":
            assert u["probe_steps"][0] == 0 and u["probe_steps"][-1] == u["total_steps"]
            assert 0.0 <= u["head_test_accuracy"] <= 1.0
            assert (out / u["run_dir"] / "model" / "head.json").exists()


def test_progress_is_one_line_per_unit_in_a_log(study):
    """No '\\r' updates in a log; a line per unit start and end, few in between."""
    import finetune.study as st

    text, wall = _LOG["study"]
    assert "\r" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("study ")]
    n = len(unit_names(TASKS))
    assert len(lines) <= 2 * n + wall / st.PROGRESS_INTERVAL + 1
    assert re.fullmatch(rf"study 0/{n} units \(0%\) \| mlp_pos_before \| elapsed \d+s \| left \?",
                        lines[0])
    assert re.fullmatch(rf"study {n}/{n} units \(100%\) \| elapsed \S+ \| left ~0s", lines[-1])
    # every unit is named when it starts, in the order of the plan
    unit = re.compile(r"study \d+/\d+ units \(\d+%\) \| ([a-z0-9-]+_[a-z0-9_-]+)(?::| \|)")
    started = [m.group(1) for m in map(unit.match, lines) if m]
    assert list(dict.fromkeys(started)) == unit_names(TASKS)
    # units done counts up one by one
    done = [int(re.match(r"study (\d+)/", ln).group(1)) for ln in lines]
    assert done == sorted(done) and set(done) == set(range(n + 1))


def test_cross_task_distances_match_the_geometry_log(study):
    """The ps-fxn model's PS-fxn minimum distances equal the run's own last-step log."""
    out, _ = study
    cross = _units(out)["cross_ps-fxn"]
    last = None
    for line in (out / "runs" / "ps-fxn" / "geometry.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("record") == "geometry" and rec["split"] == "train" and rec["layer"] == 2:
            if last is None or rec["step"] > last["step"]:
                last = rec
    logged = dict(zip(last["labels"], last["min_distance_per_label"]))
    got = dict(zip(cross["labels"], cross["min_distance"]))
    assert set(got) == set(logged)
    for lab in got:
        # Re-embedding the same model gives the same vectors up to float32 round-off.
        assert got[lab] == pytest.approx(logged[lab], rel=1e-3, abs=1e-5)


def test_report_files(study):
    out, _ = study
    report = (out / "report.md").read_text()
    for section in (
        "Table 2",
        "Tables 3-4",
        "Figure 2",
        "Figure 3",
        "Table 5",
        "Figure 4",
        "Figure 5",
    ):
        assert section in report
    for fig in (
        "fig2_label_dynamics.png",
        "fig3_centroid_paths.png",
        "fig4_layer_similarity.png",
        "fig5_displacement_pos.png",
    ):
        assert (out / "figures" / fig).read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "results.json").read_text())
    assert [r["task"] for r in results["performance"]] == list(TASKS)
    assert results["missing_units"] == []
    assert (out / "tables" / "table2_performance.csv").exists()


def test_rerun_recomputes_nothing(study, monkeypatch):
    out, argv = study
    import finetune.study as st

    def boom(*a, **k):
        raise AssertionError("a finished unit was recomputed")

    for name in ("_mlp", "_clusters", "_finetune", "_cross"):
        monkeypatch.setattr(st.StudyRunner, name, boom)
    before = {p: p.stat().st_mtime_ns for p in (out / "units").glob("*.json")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "units").glob("*.json")} == before


def test_interrupted_study_resumes(study, tmp_path, monkeypatch):
    """Delete one unit (as if the run died before writing it): only it is computed again."""
    out, argv = study
    import shutil

    import finetune.study as st

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "units" / "mlp_ps-role_after.json").unlink()
    calls = []
    real = st.StudyRunner._mlp

    def spy(self, task, stage, emb):
        calls.append((task, stage))
        return real(self, task, stage, emb)

    for name in ("_clusters", "_finetune", "_cross"):
        monkeypatch.setattr(st.StudyRunner, name, lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(st.StudyRunner, "_mlp", spy)
    argv = [a if a != str(out) else str(copy) for a in argv]
    assert main(argv) == 0
    assert calls == [("ps-role", "after")]
    assert (copy / "units" / "mlp_ps-role_after.json").exists()


def test_other_plan_is_refused(study, capsys):
    out, argv = study
    argv = list(argv)
    argv[argv.index("--tasks") + 1] = "pos"
    assert main(argv) == 2
    assert "another plan" in capsys.readouterr().err


def test_unknown_task_is_refused(tmp_path, capsys, data_dir_module):
    argv = [
        "study",
        "--tasks",
        "pos,nope",
        "--out",
        str(tmp_path / "x"),
        "--data-dir",
        str(data_dir_module),
    ]
    assert main(argv) == 2
    assert "nope" in capsys.readouterr().err


def test_preset_per_task_schedule_and_validation():
    from finetune.study import Preset

    p = Preset(name="x", epochs=4, lr=1e-4, task_epochs={"dep": 6}, task_lr={"trec50": 5e-5})
    assert p.epochs_for("dep", 10) == 6 and p.epochs_for("pos", 10) == 4
    assert Preset(name="y").epochs_for("pos", 10) == 10  # the paper's default for the model
    assert p.lr_for("trec50") == 5e-5 and p.lr_for("pos") == 1e-4
    with pytest.raises(ValueError, match="unknown task.*nope"):
        Preset(name="x", task_lr={"nope": 1e-4})
    with pytest.raises(ValueError, match="epochs of dep must be a positive integer"):
        Preset(name="x", task_epochs={"dep": 0})
    with pytest.raises(ValueError, match="lr must be a positive number"):
        Preset(name="x", lr=-1.0)


def test_quick_preset_uses_whole_corpora():
    quick = PRESETS["quick"]
    assert all(v is None for v in quick.max_train_examples.values())
    assert all(v is None for v in quick.max_test_examples.values())


def test_unit_weights_follow_the_work():
    from finetune.study import ALL_TASKS, StudyPlan, unit_weight

    quick = StudyPlan("m", ALL_TASKS, PRESETS["quick"])
    paper = StudyPlan("m", ALL_TASKS, PRESETS["paper"])
    for u in unit_names(ALL_TASKS):
        assert unit_weight(quick, u) > 0
    # 10 epochs and 11 probes cost more than the quick preset's 3 epochs and 3 probes
    assert unit_weight(paper, "finetune_pos") > unit_weight(quick, "finetune_pos")
    # POS's 800 sentences a step of 32 cost more than PS-role's 256
    assert unit_weight(quick, "finetune_pos") > unit_weight(quick, "finetune_ps-role")
