"""finetune.embed and finetune.models on a tiny random BERT (and one real-model smoke test).

Ground truth: the model is run directly on each sentence (or window) and the
sub-token spans of every word are found independently by tokenizing each word
alone, so the mean over a span is computed without encode()/pool_words().
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

from finetune.embed import _plan_windows, embed_layers, encode, model_max_length, pool_words
from finetune.models import DEFAULT_MODEL, load_encoder, resolve_model_path
from finetune.tasks.data import make_task_data

SENTS = [
    ("the", "cats", "sat", "on", "the", "mat", "."),
    ("hello", "dogs", "ran", "fast", "!"),
    ("who", "is", "small", "?"),
]


def token_task(sentences, name="pos"):
    targets = [(s, w, -1) for s, sent in enumerate(sentences) for w in range(len(sent))]
    labels = ["X"] * len(targets)
    return make_task_data(name, "train", "token", sentences, targets, labels, ["X"])


def direct_states(model, tokenizer, words):
    """hidden_states of the model run on one word list, and each word's sub-token span."""
    ids = [tokenizer.cls_token_id]
    spans = []
    for w in words:
        pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(w)) or [tokenizer.unk_token_id]
        spans.append((len(ids), len(ids) + len(pieces)))
        ids += pieces
    ids.append(tokenizer.sep_token_id)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return [h[0] for h in out.hidden_states], spans


def test_shapes_layers_and_subtoken_means(tiny_encoder):
    model, tok = tiny_encoder
    task = token_task(SENTS)
    out = embed_layers(model, tok, task, batch_size=2, progress=False)
    assert len(out) == model.config.num_hidden_layers + 1 == 3
    assert all(t.shape == (task.n_examples, 32) and t.dtype == torch.float32 for t in out)
    multi = 0
    for row, (s, w, _) in enumerate(task.targets):
        states, spans = direct_states(model, tok, SENTS[s])
        a, b = spans[w]
        multi += b - a > 1
        for k in range(3):
            torch.testing.assert_close(out[k][row], states[k][a:b].mean(0), atol=1e-5, rtol=1e-5)
    assert multi >= 3  # "cats", "hello", "dogs" split into several sub-tokens
    # layer selection follows the requested order
    sel = embed_layers(model, tok, task, layers=[2, 0], progress=False)
    torch.testing.assert_close(sel[0], out[2])
    torch.testing.assert_close(sel[1], out[0])


def test_pair_rows_are_concatenations(tiny_encoder):
    model, tok = tiny_encoder
    words = token_task(SENTS)
    targets = [(0, 1, 2), (0, 0, 1), (1, 4, 2), (2, 2, 0)]
    dep = make_task_data("dep", "train", "pair", SENTS, targets, list("abcd"), list("abcd"))
    w_out = embed_layers(model, tok, words, progress=False)
    p_out = embed_layers(model, tok, dep, progress=False)
    offsets = np.cumsum([0] + [len(s) for s in SENTS])
    for k in range(3):
        assert p_out[k].shape == (4, 64)
        for i, (s, w, h) in enumerate(targets):
            expect = torch.cat([w_out[k][offsets[s] + w], w_out[k][offsets[s] + h]])
            torch.testing.assert_close(p_out[k][i], expect, atol=1e-5, rtol=1e-5)


def test_sentence_rows_are_cls(tiny_encoder):
    model, tok = tiny_encoder
    targets = [(i, -1, -1) for i in range(len(SENTS))]
    trec = make_task_data("trec50", "test", "sentence", SENTS, targets, ["A"] * 3, ["A"])
    out = embed_layers(model, tok, trec, batch_size=2, progress=False)
    for s in range(len(SENTS)):
        states, _ = direct_states(model, tok, SENTS[s])
        for k in range(3):
            torch.testing.assert_close(out[k][s], states[k][0], atol=1e-5, rtol=1e-5)


def test_deterministic_eval_mode_and_batch_size(tiny_encoder):
    model, tok = tiny_encoder
    task = token_task(SENTS)
    model.train()  # dropout is 0.1 in the tiny config: only eval mode is deterministic
    a = embed_layers(model, tok, task, batch_size=2, progress=False)
    assert model.training  # the caller's mode is restored
    b = embed_layers(model, tok, task, batch_size=2, progress=False)
    c = embed_layers(model, tok, task, batch_size=1, progress=False)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y)
        torch.testing.assert_close(x, z, atol=1e-5, rtol=1e-5)


def test_only_sentences_with_examples_and_row_order(tiny_encoder):
    model, tok = tiny_encoder
    full = embed_layers(model, tok, token_task(SENTS), progress=False)
    # examples in a scrambled corpus order, sentence 1 unused
    targets = [(2, 3, -1), (0, 1, -1), (2, 0, -1), (0, 5, -1)]
    task = make_task_data("ps-role", "test", "token", SENTS, targets, ["p"] * 4, ["p"])
    out = embed_layers(model, tok, task, progress=False)
    offsets = np.cumsum([0] + [len(s) for s in SENTS])
    for i, (s, w, _) in enumerate(targets):
        torch.testing.assert_close(out[1][i], full[1][offsets[s] + w], atol=1e-5, rtol=1e-5)


# ---- long sentences --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_plan_windows_covers_every_word_with_max_context(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, size=int(rng.integers(1, 60))).tolist()
    budget = int(rng.integers(5, 25))
    windows, owner = _plan_windows(counts, budget)
    n = len(counts)
    assert windows[0][0] == 0 and windows[-1][1] == n
    for (a, b), (c, d) in zip(windows, windows[1:]):
        assert a < c <= b  # progress, and no gap between windows
    for a, b in windows:
        assert b > a and (sum(counts[a:b]) <= budget or b - a == 1)
    for w in range(n):
        a, b = windows[owner[w]]
        assert a <= w < b
        best = max(min(w - x, y - 1 - w) for x, y in windows if x <= w < y)
        assert min(w - a, b - 1 - w) == best
    if sum(counts) <= budget:
        assert windows == [(0, n)]


def test_long_sentence_every_word_gets_its_owner_window_vector(tiny_encoder):
    model, tok = tiny_encoder
    max_len = model_max_length(model, tok)
    assert max_len == 24
    words = tuple(["the", "cats", "sat", "on", "hello", "mat", "."] * 8)  # ~100 sub-tokens
    task = token_task([words])
    out = embed_layers(model, tok, task, progress=False)
    counts = [len(tok.tokenize(w)) for w in words]
    windows, owner = _plan_windows(counts, max_len - 2)
    assert len(windows) > 3
    direct = [direct_states(model, tok, words[a:b]) for a, b in windows]
    for w in range(len(words)):
        a, b = windows[owner[w]]
        states, spans = direct[owner[w]]
        assert spans[-1][1] + 1 <= max_len
        s0, s1 = spans[w - a]
        for k in range(3):
            torch.testing.assert_close(out[k][w], states[k][s0:s1].mean(0), atol=1e-5, rtol=1e-5)
    enc = encode(tok, [words], max_length=max_len)
    assert enc.inputs["input_ids"].shape[1] <= max_len
    assert enc.n_windowed == 1
    # each word is owned by exactly one window: its sub-tokens appear once in word_map
    owned = enc.word_map[enc.word_map >= 0]
    assert sorted(set(owned.tolist())) == list(range(len(words)))
    assert len(owned) == sum(counts)


def test_overlong_word_and_empty_word_still_get_vectors(tiny_encoder, caplog):
    model, tok = tiny_encoder
    giant = "x" * 40  # 40 sub-tokens: longer than a whole window
    sents = [("the", giant, "cats"), ("the", "\u200b", "cats")]
    out = embed_layers(model, tok, token_task(sents), progress=False)
    assert all(torch.isfinite(t).all() and (t.abs().sum(1) > 0).all() for t in out)
    # the zero-width space is read as [UNK]
    states, spans = direct_states(model, tok, ("the", tok.unk_token, "cats"))
    torch.testing.assert_close(out[2][4], states[2][spans[1][0]], atol=1e-5, rtol=1e-5)
    # a long question: [CLS] of the first window, with a warning
    long_q = tuple(["who", "is", "small", "?"] * 10)
    trec = make_task_data("trec50", "test", "sentence", [long_q], [(0, -1, -1)], ["A"], ["A"])
    with caplog.at_level(logging.WARNING, logger="finetune.embed"):
        (cls,) = embed_layers(model, tok, trec, layers=[1], progress=False)
    assert "first window" in caplog.text
    counts = [len(tok.tokenize(w)) for w in long_q]
    (a, b), *_ = _plan_windows(counts, 22)[0]
    states, _ = direct_states(model, tok, long_q[a:b])
    torch.testing.assert_close(cls[0], states[1][0], atol=1e-5, rtol=1e-5)


# ---- pool_words --------------------------------------------------------------------------


def test_pool_words_mean_and_gradient():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float64).reshape(2, 5, 3).requires_grad_()
    word_map = torch.tensor([[-1, 0, 0, 1, -1], [-1, 1, 1, 1, -1]])
    # two rows of the same sentence (a windowed sentence): word 1 collects from both rows
    pooled = pool_words(hidden, word_map, torch.tensor([0, 0]), 1, 3)
    h = hidden.detach()
    expect0 = (h[0, 1] + h[0, 2]) / 2
    expect1 = (h[0, 3] + h[1, 1] + h[1, 2] + h[1, 3]) / 4
    torch.testing.assert_close(pooled[0, 0], expect0)
    torch.testing.assert_close(pooled[0, 1], expect1)
    assert torch.equal(pooled[0, 2], torch.zeros(3, dtype=torch.float64))  # no sub-token
    pooled[0, 1].sum().backward()
    grad = hidden.grad[..., 0]
    torch.testing.assert_close(
        grad, torch.tensor([[0, 0, 0, 0.25, 0], [0, 0.25, 0.25, 0.25, 0]], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="word_map"):
        pool_words(hidden, word_map[:, :3])


# ---- bad input ---------------------------------------------------------------------------


def test_bad_layers_targets_and_sentences(tiny_encoder):
    model, tok = tiny_encoder
    task = token_task(SENTS)
    with pytest.raises(ValueError, match=r"layers must be in 0\.\.2"):
        embed_layers(model, tok, task, layers=[3], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = make_task_data("pos", "train", "token", SENTS, [(0, 99, -1)], ["X"], ["X"])
    with pytest.raises(ValueError, match="row 0: word index 99"):
        embed_layers(model, tok, bad, progress=False)
    with pytest.raises(ValueError, match="sentence 1 has no words"):
        encode(tok, [("a",), ()])
    with pytest.raises(TypeError, match="sequence of words"):
        encode(tok, ["the cat"])


# ---- models ------------------------------------------------------------------------------


def test_resolve_and_load_a_local_folder(tiny_model_dir, tmp_path):
    assert resolve_model_path(tiny_model_dir) == tiny_model_dir
    model, tok = load_encoder(str(tiny_model_dir))
    assert tok.is_fast and not model.training
    assert model.config.num_hidden_layers == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model_path(empty)


def test_unknown_model_names_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    with pytest.raises(ValueError) as err:
        resolve_model_path("no-such-org/no-such-model")
    msg = str(err.value)
    assert "no-such-org/no-such-model" in msg and DEFAULT_MODEL in msg and "cache" in msg


def test_cached_hub_model_is_found(tiny_model_dir, tmp_path, monkeypatch):
    # lay out a Hugging Face cache entry by hand, as the hub client writes it
    hub = tmp_path / "hub"
    snap = hub / "models--org--tiny" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in tiny_model_dir.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (hub / "models--org--tiny" / "refs").mkdir()
    (hub / "models--org--tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    assert resolve_model_path("org/tiny") == snap


def test_default_model_loads_offline_and_embeds(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model_path(DEFAULT_MODEL)
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    model, tok = load_encoder(DEFAULT_MODEL)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    out = embed_layers(model, tok, token_task([SENTS[0]]), layers=[0, 6], progress=False)
    states, spans = direct_states(model, tok, SENTS[0])
    a, b = spans[1]
    torch.testing.assert_close(out[1][1], states[6][a:b].mean(0), atol=1e-5, rtol=1e-5)


# ---- torch -> geomcore: DLPack, no copy ---------------------------------------------------


def test_geomcore_reads_a_cpu_tensor_without_a_copy():
    from geomcore._validate import as_points
    from geomcore.distances import label_distances

    t = torch.randn(50, 8)
    pts = as_points(t, "X", dtype=np.float32)
    assert pts.ctypes.data == t.data_ptr()  # geomcore's intake shares the tensor's buffer
    t[3, 2] = 123.0  # a write through torch is seen through geomcore's view
    assert pts[3, 2] == 123.0
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20, 3)), rng.normal(0, 1, (20, 3)) + [8, 0, 0]])
    labels = np.array(["a"] * 20 + ["b"] * 20)
    got = label_distances(torch.from_numpy(X), labels)
    ref = label_distances(X, labels)
    np.testing.assert_allclose(got.matrix, ref.matrix, rtol=1e-6)
    # an independent bound: the gap along x is at least the min/max difference
    assert got.matrix[0, 1] >= X[20:, 0].min() - X[:20, 0].max() - 1e-6
