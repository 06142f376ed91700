"""Parameter and FLOP accounting: N, C and their conventions, against hand counts."""

from __future__ import annotations

import pytest

from flops_fit_core import Conventions, ExperimentSpec, ModelShape, flops


def shape(**kw) -> ModelShape:
    base = dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072, vocab_size=50257, seq_len=1024)
    return ModelShape(**{**base, **kw})


def test_gpt2_small_parameter_count():
    # GPT-2 small without biases, position embeddings or tied readout: 12 layers of
    # 12 d^2 + 2 d (two norms), a final norm, and two untied 50257 x 768 vocabulary matrices.
    s = shape()
    per_layer = 12 * 768**2 + 2 * 768
    assert s.params_non_embedding == 12 * per_layer + 768 == 84_953_856
    assert s.params_total == 84_953_856 + 2 * 50257 * 768


def test_exact_flops_follow_chinchilla_appendix_f():
    s = shape()
    d, t, v, L, h, f = 768, 1024, 50257, 12, 12, 3072
    forward = 2 * v * d + L * (
        6 * d * d + 2 * t * d + 3 * h * t + 2 * t * d + 2 * d * d + 4 * d * f
    )
    forward += 2 * d * v
    assert s.flops_per_token == 3 * forward


def test_exact_flops_approach_6n_for_wide_models_with_short_context():
    # With T << d and a small vocabulary, attention and embedding terms vanish: exact -> 6N.
    s = ModelShape(d_model=8192, n_layers=48, n_heads=64, d_ff=32768, vocab_size=256, seq_len=64)
    ratio = s.flops_per_token / (6 * s.params_total)
    assert ratio == pytest.approx(1.0, abs=0.01)


def test_conventions_pick_the_count():
    s = shape()
    assert s.flops_per_token_in(Conventions(flops="6n", params="total")) == 6 * s.params_total
    assert (
        s.flops_per_token_in(Conventions(flops="6n", params="non_embedding"))
        == 6 * s.params_non_embedding
    )
    with pytest.raises(ValueError):
        flops.params_count(1, 1, 1, 1, "bogus")


def test_spec_id_is_a_content_hash_not_a_counter():
    s = shape()
    kw = dict(
        budget=1e19, params=s.params_total, tokens=10**9, shape=s, learning_rate=1e-3, batch_size=32
    )
    a, b = ExperimentSpec(**kw), ExperimentSpec(**kw)
    assert a.id == b.id and len(a.id) == 12
    assert ExperimentSpec(**{**kw, "seed": 1}).id != a.id
    assert ExperimentSpec.model_validate_json(a.model_dump_json()).id == a.id


def test_spec_rejects_an_edited_id_and_a_wrong_parameter_count():
    s = shape()
    kw = dict(
        budget=1e19, params=s.params_total, tokens=10**9, shape=s, learning_rate=1e-3, batch_size=32
    )
    data = ExperimentSpec(**kw).model_dump()
    data["tokens"] += 1
    with pytest.raises(ValueError, match="does not match the spec"):
        ExperimentSpec.model_validate(data)
    with pytest.raises(ValueError, match="does not match the shape"):
        ExperimentSpec(**{**kw, "params": s.params_total + 1})


def test_shape_needs_heads_to_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        shape(n_heads=7)
