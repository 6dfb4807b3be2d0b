"""`finetune embed` (through register() + argparse, and through main()) and
bench.extract_layers, on a tiny model saved to tmp_path and a tiny corpus."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch

from bench import extract_layers
from finetune import embed_cli
from geomcore.io import write_lines_atomic
from finetune.tasks import TASKS


def parse(argv):
    parser = argparse.ArgumentParser(prog="finetune")
    sub = parser.add_subparsers(dest="command")
    embed_cli.register(sub)
    return parser.parse_args(argv)


def embed_argv(tiny_model_dir, data_dir, out, task="ps-role", split="train", layer=1):
    return [
        "embed", "--task", task, "--split", split, "--layer", str(layer),
        "--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--out", str(out),
        "--batch-size", "1", "--no-progress",
    ]


def direct_word_vector(model_dir, words, w, layer):
    """Ground truth: run the saved model on the sentence, mean of word w's sub-tokens."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    ids, spans = [tok.cls_token_id], []
    for word in words:
        pieces = tok.convert_tokens_to_ids(tok.tokenize(word))
        spans.append((len(ids), len(ids) + len(pieces)))
        ids += pieces
    ids.append(tok.sep_token_id)
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    a, b = spans[w]
    return hs[layer][0, a:b].mean(0).numpy()


def test_embed_writes_vectors_and_labels(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "res" / "role_train_L1.npy"
    args = parse(embed_argv(tiny_model_dir, tiny_data_dir, out))
    assert args.func is embed_cli.run
    assert args.func(args) == 0
    X = np.load(out)
    assert X.dtype == np.float32 and X.shape == (2, 32)
    labels = (tmp_path / "res" / "role_train_L1.labels.txt").read_text(encoding="utf-8")
    assert labels.splitlines() == ["p.Locus", "p.Goal"]  # corpus order
    # rows: "on" in "cat on mat at", then "to" in "to dog"
    np.testing.assert_allclose(
        X[0], direct_word_vector(tiny_model_dir, ["cat", "on", "mat", "at"], 1, 1), atol=1e-5
    )
    np.testing.assert_allclose(X[1], direct_word_vector(tiny_model_dir, ["to", "dog"], 0, 1),
                               atol=1e-5)
    assert [p.name for p in (tmp_path / "res").iterdir() if p.name.startswith(".")] == []


def test_embed_through_main_pair_task(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    from finetune.__main__ import main

    out = tmp_path / "dep_test_L2.npy"
    assert main(embed_argv(tiny_model_dir, tiny_data_dir, out, task="dep", split="test",
                           layer=2)) == 0
    X = np.load(out)
    assert X.shape == (3 + 2 + 3, 64)  # non-root arcs of the 3 test sentences; concat(word, head)
    words = ["the", "cat", "sat", "."]
    np.testing.assert_allclose(X[0, :32], direct_word_vector(tiny_model_dir, words, 0, 2),
                               atol=1e-5)
    np.testing.assert_allclose(X[0, 32:], direct_word_vector(tiny_model_dir, words, 1, 2),
                               atol=1e-5)
    assert "wrote" in capsys.readouterr().out


def test_embed_errors_say_what_to_fix(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "x.npy"
    with pytest.raises(ValueError) as err:
        embed_cli.run(parse(embed_argv(tiny_model_dir, tiny_data_dir, out, task="ner")))
    assert all(t in str(err.value) for t in TASKS)
    with pytest.raises(ValueError, match="unknown model"):
        embed_cli.run(parse(embed_argv(tmp_path / "nope", tiny_data_dir, out)))
    with pytest.raises(ValueError, match=r"--layer must be in 0\.\.2"):
        embed_cli.run(parse(embed_argv(tiny_model_dir, tiny_data_dir, out, layer=7)))
    with pytest.raises(ValueError, match=r"\.npy"):
        embed_cli.run(parse(embed_argv(tiny_model_dir, tiny_data_dir, tmp_path / "x.txt")))
    (tiny_data_dir / "trec" / "TREC_10.label").unlink()
    with pytest.raises(FileNotFoundError, match=r"TREC_10\.label"):
        embed_cli.run(parse(embed_argv(tiny_model_dir, tiny_data_dir, out, task="trec50",
                                       split="test")))
    assert not out.exists()


def test_malformed_corpus_is_named_and_old_output_survives(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys
):
    from finetune.__main__ import main

    out = tmp_path / "pos.npy"
    np.save(out, np.arange(3.0))  # a previous result must not be clobbered by a failed run
    pud = tiny_data_dir / "ud-english-pud" / "en_pud-ud-test.conllu"
    lines = pud.read_text(encoding="utf-8").split("\n")
    lines[3] = "1\tthe\tthe\tDET"  # line 4: word 1 of sentence 1, columns missing
    pud.write_text("\n".join(lines), encoding="utf-8")
    code = main(embed_argv(tiny_model_dir, tiny_data_dir, out, task="pos"))
    assert code == 2
    err = capsys.readouterr().err
    assert "en_pud-ud-test.conllu, line 4" in err and "10 tab-separated columns" in err
    np.testing.assert_array_equal(np.load(out), np.arange(3.0))


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.labels.txt"
    target.write_text("old\n")
    with pytest.raises(ValueError, match="newline"):
        write_lines_atomic(target, ["ok", "bad\nlabel"])
    assert target.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["a.labels.txt"]
    assert embed_cli.labels_path_for(tmp_path / "X.npy") == tmp_path / "X.labels.txt"


# ---- bench.extract_layers ----------------------------------------------------------------


def test_parse_layers():
    assert extract_layers.parse_layers("0-6", 6) == list(range(7))
    assert extract_layers.parse_layers("6,0-1", 6) == [0, 1, 6]
    assert extract_layers.parse_layers(None, 2) == [0, 1, 2]
    with pytest.raises(ValueError, match="outside 0..6"):
        extract_layers.parse_layers("0-7", 6)
    with pytest.raises(ValueError, match="not a layer list"):
        extract_layers.parse_layers("six", 6)


def test_extract_layers_writes_resumes_and_refuses_mixing(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "cache"
    monkeypatch.setenv("GEOMCORE_BENCH_CACHE", str(out))  # the default --out
    argv = ["--task", "pos", "--split", "test", "--model", str(tiny_model_dir),
            "--data-dir", str(tiny_data_dir), "--no-progress"]
    assert extract_layers.main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["pos_test.labels.txt", "pos_test.meta.json"] + [
        f"pos_test_L{k}.npy" for k in range(3)
    ]
    X = [np.load(out / f"pos_test_L{k}.npy") for k in range(3)]
    assert all(x.shape == (11, 32) and x.dtype == np.float32 for x in X)
    labels = (out / "pos_test.labels.txt").read_text().splitlines()
    assert labels[:4] == ["DET", "NOUN", "VERB", "PUNCT"] and len(labels) == 11
    # sentence 2 ("dogs ran fast") word 2, layer 2, against a direct run of the model
    np.testing.assert_allclose(
        X[2][5], direct_word_vector(tiny_model_dir, ["dogs", "ran", "fast"], 1, 2), atol=1e-5
    )
    # resumable: present files are skipped, a deleted one is rebuilt identically
    mtime = (out / "pos_test_L0.npy").stat().st_mtime_ns
    (out / "pos_test_L1.npy").unlink()
    assert extract_layers.main(argv + ["--layers", "0-2"]) == 0
    assert "wrote layers [1], skipped [0, 2]" in capsys.readouterr().out
    assert (out / "pos_test_L0.npy").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(np.load(out / "pos_test_L1.npy"), X[1])
    # another model's vectors are never mixed into the same cache
    other = tmp_path / "other-model"
    other.mkdir()
    for f in tiny_model_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    assert extract_layers.main(["--task", "pos", "--split", "test", "--model", str(other),
                                "--data-dir", str(tiny_data_dir), "--no-progress"]) == 2
    assert "refusing to mix" in capsys.readouterr().err
