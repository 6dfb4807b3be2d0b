"""Fine-tuning loop: learning, heads, label index, schedule, exact resume.

Tiny models only (tests/finetune/tiny.py: 2 layers, hidden 32, WordPiece
vocab written to tmp_path); nothing is downloaded. Ground truth comes from
outside the code under test: transformers' own LR schedule, and accuracies
recomputed from the saved model with a plain per-sentence loop (tokenizer ->
model -> mean of the word's sub-tokens -> saved head).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune.config import TrainConfig, default_epochs
from finetune.embed import embed_layers, encode
from finetune.heads import TaskHead, example_features
from finetune.train import fit, label_index, linear_warmup_decay, load_head, slice_task
from tests.finetune.tiny import build_tiny_encoder, toy_task



def reference_features(model, tokenizer, task):
    """Example vectors by a plain loop, one sentence at a time (no batching, no windows)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for s, w, h in np.asarray(task.targets):
            words = list(task.sentences[s])
            enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
            hid = model(**enc).last_hidden_state[0]
            ids = np.array([-1 if i is None else i for i in enc.word_ids(0)])
            if task.kind == "sentence":
                out.append(hid[0])
                continue
            vec = hid[torch.as_tensor(ids == w)].mean(0)
            if task.kind == "pair":
                vec = torch.cat([vec, hid[torch.as_tensor(ids == h)].mean(0)])
            out.append(vec)
    return torch.stack(out)


def reference_accuracy(out_dir: Path, task) -> float:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(out_dir / "model")
    tokenizer = AutoTokenizer.from_pretrained(out_dir / "model")
    head, names = load_head(out_dir / "model")
    with torch.inference_mode():
        pred = head(reference_features(model, tokenizer, task)).argmax(-1).numpy()
    gold = [names.index(lab) if lab in names else -1 for lab in task.labels]
    return float(np.mean(pred == np.array(gold)))


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_training_learns_and_unseen_test_labels_are_kept(tmp_path):
    model, tok = build_tiny_encoder(tmp_path)
    train = toy_task("train", 40, 0)
    # "fast" (label ADV) occurs only in the test split.
    test = toy_task("test", 12, 1, extra_words=("fast",))
    n_unseen = sum(lab == "ADV" for lab in test.labels)
    assert n_unseen > 0
    cfg = TrainConfig(task="toy", out_dir=tmp_path / "run", epochs=5, batch_size=8, lr=2e-3,
                      probe_every=10, progress=False)
    res = fit(model, tok, train, test, cfg)
    assert res.completed and res.step == res.total_steps == 25

    metrics = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in metrics] == [0, 10, 20, 25]
    losses = [r["train_loss"] for r in metrics[1:]]
    assert losses[-1] < 0.5 * losses[0]
    assert metrics[0]["train_accuracy"] < 0.7 <= 0.95 <= metrics[-1]["train_accuracy"]

    header = read_jsonl(tmp_path / "run" / "geometry.jsonl")[0]
    assert header["record"] == "header"
    assert header["test_labels_missing_from_train"] == ["ADV"]
    assert header["n_test_examples_with_unseen_label"] == n_unseen
    assert header["label_names"] == ["ADJ", "NOUN", "VERB", "ADV"]

    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_labels_missing_from_train"] == ["ADV"]
    # Unseen-label examples are in the denominator and can never be right.
    assert results["test_accuracy"] <= 1 - n_unseen / test.n_examples + 1e-12
    assert results["test_accuracy"] == pytest.approx(reference_accuracy(tmp_path / "run", test))
    assert results["train_accuracy"] == pytest.approx(reference_accuracy(tmp_path / "run", train))
    assert results["train_accuracy"] >= 0.95


@pytest.mark.parametrize("kind", ["pair", "sentence"])
def test_pair_and_sentence_heads_match_a_plain_reference(tmp_path, kind):
    model, tok = build_tiny_encoder(tmp_path)
    train, test = toy_task("train", 24, 2, kind=kind), toy_task("test", 8, 3, kind=kind)
    cfg = TrainConfig(task="toy", out_dir=tmp_path / "run", epochs=2, batch_size=8, lr=2e-3,
                      progress=False)
    res = fit(model, tok, train, test, cfg)
    assert res.completed
    # The head's input width: 2 x hidden for pairs, hidden for sentences.
    head, _ = load_head(tmp_path / "run" / "model")
    assert head.linear.in_features == (64 if kind == "pair" else 32)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_accuracy"] == pytest.approx(reference_accuracy(tmp_path / "run", test))
    assert results["train_accuracy"] == pytest.approx(reference_accuracy(tmp_path / "run", train))


def test_head_features_equal_the_probed_vectors_for_long_sentences(tmp_path):
    """What the head trains on is what the geometry measures, windows included."""
    model, tok = build_tiny_encoder(tmp_path)
    task = toy_task("train", 5, 4, long_sentence=True)  # sentence 0: 30 words > 24 positions
    assert len(task.sentences[0]) + 2 > tok.model_max_length
    enc = encode(tok, [list(s) for s in task.sentences], max_length=tok.model_max_length)
    assert enc.n_windowed == 1
    with torch.inference_mode():
        hidden = model(**enc.inputs).last_hidden_state
        feats = example_features(hidden, enc, torch.tensor(task.targets), "token")
    probed = embed_layers(model, tok, task, progress=False)[-1]
    assert feats.shape == probed.shape == (task.n_examples, 32)
    torch.testing.assert_close(feats, probed, rtol=1e-5, atol=1e-5)


def test_training_on_long_sentences_keeps_every_example(tmp_path):
    model, tok = build_tiny_encoder(tmp_path)
    train = toy_task("train", 16, 5, long_sentence=True)
    test = toy_task("test", 4, 6)
    cfg = TrainConfig(task="toy", out_dir=tmp_path / "run", epochs=1, batch_size=8, progress=False,
                      save_model=False)
    fit(model, tok, train, test, cfg)
    geo = read_jsonl(tmp_path / "run" / "geometry.jsonl")
    last_train = [r for r in geo if r.get("split") == "train" and r["step"] == 2]
    assert len(last_train) == 3  # layers 0, 1, 2
    assert all(sum(r["counts"]) == train.n_examples for r in last_train)


def _state(out_dir):
    return torch.load(out_dir / "checkpoint" / "state.pt", weights_only=False)


def _strip(records):
    # Wall times differ between runs; every timing field ends in "seconds".
    return [{k: v for k, v in r.items() if not k.endswith("seconds")}
            for r in records if r["record"] != "header"]


def test_interrupted_runs_resume_to_the_same_weights(tmp_path, monkeypatch):
    import finetune.train as train_mod

    train, test = toy_task("train", 40, 7), toy_task("test", 8, 8)  # 5 steps/epoch
    common = dict(task="toy", epochs=2, batch_size=8, lr=1e-3, probe_every=5, progress=False,
                  save_model=False)

    model, tok = build_tiny_encoder(tmp_path)
    ref = fit(model, tok, train, test, TrainConfig(out_dir=tmp_path / "ref", **common))
    assert ref.completed and ref.total_steps == 10

    # (1) --max-steps stops at step 4 (mid-epoch); running again continues.
    out = tmp_path / "stopped"
    model, tok = build_tiny_encoder(tmp_path)
    part = fit(model, tok, train, test, TrainConfig(out_dir=out, max_steps=4, **common))
    assert not part.completed and part.step == 4
    assert not (out / "results.json").exists()
    model, tok = build_tiny_encoder(tmp_path)  # a fresh process would reload the encoder
    done = fit(model, tok, train, test, TrainConfig(out_dir=out, **common))
    assert done.completed and done.step == 10

    # (2) a crash in the middle of the probe at step 5 (train split logged, test
    # not), with the last checkpoint at step 4: step 5 is redone.
    crashed = tmp_path / "crashed"
    real_probe = train_mod.probe_split

    def failing_probe(*args, **kw):
        if kw["step"] == 5 and args[2].split == "test":
            raise KeyboardInterrupt("injected")
        return real_probe(*args, **kw)

    monkeypatch.setattr(train_mod, "probe_split", failing_probe)
    model, tok = build_tiny_encoder(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        fit(model, tok, train, test, TrainConfig(out_dir=crashed, save_every=2, **common))
    assert _state(crashed)["step"] == 4
    monkeypatch.setattr(train_mod, "probe_split", real_probe)
    model, tok = build_tiny_encoder(tmp_path)
    fit(model, tok, train, test, TrainConfig(out_dir=crashed, save_every=2, **common))

    ref_state = _state(tmp_path / "ref")
    for run in (out, crashed):
        state = _state(run)
        assert state["step"] == 10
        assert state["model"].keys() == ref_state["model"].keys()
        for k, v in ref_state["model"].items():
            assert torch.equal(state["model"][k], v), (run.name, k)
        # Every probe logged exactly once, with the uninterrupted run's values.
        for name in ("geometry.jsonl", "metrics.jsonl"):
            got = _strip(read_jsonl(run / name))
            want = _strip(read_jsonl(tmp_path / "ref" / name))
            if name == "metrics.jsonl":  # the mean loss restarts with the process
                got = [{k: v for k, v in r.items() if k != "train_loss"} for r in got]
                want = [{k: v for k, v in r.items() if k != "train_loss"} for r in want]
            keys = [(r["record"], r["step"], r.get("split"), r.get("layer")) for r in got]
            assert len(keys) == len(set(keys))
            assert sorted(keys, key=str) == sorted(
                [(r["record"], r["step"], r.get("split"), r.get("layer")) for r in want], key=str
            )
            by_key = {(r["record"], r["step"], r.get("split"), r.get("layer")): r for r in want}
            for r in got:
                w = by_key[(r["record"], r["step"], r.get("split"), r.get("layer"))]
                assert r == w
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 5, 10]
    crashed_geo = [(r["step"], r["split"]) for r in read_jsonl(crashed / "geometry.jsonl")[1:]]
    assert crashed_geo.count((5, "train")) == crashed_geo.count((5, "test")) == 3


def test_resume_refuses_different_settings(tmp_path):
    model, tok = build_tiny_encoder(tmp_path)
    train, test = toy_task("train", 16, 9), toy_task("test", 4, 10)
    base = dict(task="toy", out_dir=tmp_path / "run", epochs=1, batch_size=8, progress=False,
                save_model=False)
    fit(model, tok, train, test, TrainConfig(max_steps=1, **base))
    with pytest.raises(ValueError, match=r"different settings.*lr: checkpoint has 3e-05"):
        fit(model, tok, train, test, TrainConfig(lr=1e-3, **base))


def test_linear_schedule_matches_transformers():
    from transformers import get_linear_schedule_with_warmup

    for total, ratio in ((37, 0.1), (80, 0.1), (10, 0.0), (5, 0.5)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        ref = get_linear_schedule_with_warmup(opt, int(np.ceil(ratio * total)), total)
        factor = linear_warmup_decay(total, ratio)
        for step in range(total + 1):
            assert factor(step) == pytest.approx(ref.lr_lambdas[0](step), abs=1e-12), (total, step)


def test_label_index_puts_test_only_labels_last():
    idx = label_index(("b", "a", "b"), ("c", "a", "z"))
    assert idx.names == ("a", "b", "c", "z") and idx.n_train == 2
    assert idx.missing_from_train == ("c", "z")
    assert idx.train_ids.tolist() == [1, 0, 1] and idx.test_ids.tolist() == [2, 0, 3]
    with pytest.raises(ValueError, match="no examples"):
        label_index((), ("a",))


def test_slice_task_keeps_the_first_examples_and_their_words():
    task = toy_task("train", 10, 11, kind="pair")
    cut = slice_task(task, 7)
    assert cut.n_examples == 7 and cut.labels == task.labels[:7]
    for (s0, w0, h0), (s1, w1, h1) in zip(task.targets[:7], cut.targets):
        assert task.sentences[s0][w0] == cut.sentences[s1][w1]
        assert task.sentences[s0][h0] == cut.sentences[s1][h1]
    assert len(cut.sentences) == len(np.unique(task.targets[:7, 0]))
    assert slice_task(task, 10_000) is task


def test_default_epochs_and_config_validation(tmp_path):
    assert default_epochs(6, 384) == 10 and default_epochs(2, 32) == 10
    assert default_epochs(12, 768) == 3 and default_epochs(6, 768) == 3
    for kw, msg in (
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"probe_every": -2}, "probe_every"),
        ({"max_steps": 0}, "max_steps"),
        ({"epochs": 1.5}, "epochs"),
    ):
        with pytest.raises(ValueError, match=msg):
            TrainConfig(task="pos", out_dir=tmp_path, **kw)
    with pytest.raises(ValueError, match="at least one label"):
        TaskHead("token", 8, 0)


def test_progress_in_a_log_is_plain_lines(tmp_path, capsys):
    """Not a terminal (pytest's captured stderr): no tqdm '\\r' updates, a bounded line count."""
    import finetune.train as tr

    model, tok = build_tiny_encoder(tmp_path)
    train, test = toy_task("train", 40, 0), toy_task("test", 8, 1)
    cfg = TrainConfig(task="toy", out_dir=tmp_path / "run", epochs=5, batch_size=4, lr=2e-3,
                      probe_every=10, progress=True)
    seen = []
    res = fit(model, tok, train, test, cfg, on_step=lambda s, n, loss: seen.append((s, n)))
    assert res.completed and seen == [(s, 50) for s in range(1, 51)]
    # CPU time is counted apart from wall time (a shared machine's wall time is noisy)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0 < results["train_cpu_seconds"] == res.train_cpu_seconds
    assert 0 < results["probe_cpu_seconds"] == res.probe_cpu_seconds
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("train toy")]
    # begin + end + close, and at most one line per PROGRESS_INTERVAL of wall time
    assert 3 <= len(lines) <= 3 + res.wall_seconds / tr.PROGRESS_INTERVAL + 1
    assert lines[0] == "train toy 0/1 units (0%) | steps | elapsed 0s | left ?"
    assert lines[-1].startswith("train toy 1/1 units (100%) | elapsed ")
    assert lines[-1].endswith("| left ~0s")
