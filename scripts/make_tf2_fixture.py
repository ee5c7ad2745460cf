"""Write the TF2 object-based checkpoint fixture (``tests/fixtures/tf2_object/``) with real TensorFlow.

TensorFlow is never a dependency of bert-lrp: run this in a throwaway virtual environment.

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf_keras numpy
    /tmp/tfvenv/bin/python scripts/make_tf2_fixture.py tests/fixtures/tf2_object

What it writes, by TensorFlow itself (``tf.train.Checkpoint.save``, the object-based format of
TF2): a tiny BERT (hidden 32, 2 layers, 4 heads, intermediate 37, vocab 99, 64 positions) whose
objects are named as Google's BERT variables, so every weight is stored as
``bert/.../<leaf>/.ATTRIBUTES/VARIABLE_VALUE``; after one step of a Keras Adam optimizer, its
slots ``.../.OPTIMIZER_SLOT/optimizer/{m,v}/.ATTRIBUTES/VARIABLE_VALUE`` and its own variables;
``save_counter``; and ``_CHECKPOINTABLE_OBJECT_GRAPH``, the DT_STRING tensor describing the object
graph. ``strings.index``/``strings.data-*``: a checkpoint of one variable holding four strings (DT_STRING,
shape [4]). ``reference_outputs.npz``: input ids, token types and masks of two batches and the
encoder's last hidden state and pooled output computed by TensorFlow (this file's TF forward of
BERT, erf GELU, LayerNorm epsilon 1e-12, additive mask -10000) with the saved weights.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

CONFIG = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32,
          "initializer_range": 0.02, "intermediate_size": 37, "max_position_embeddings": 64,
          "num_attention_heads": 4, "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": 99}
SEED = 2021
STRINGS = ["", "a", "longer \u00fcn\u00efcode text", "x" * 300]


class Dense(tf.Module):
    def __init__(self, rng: np.random.Generator, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.kernel = tf.Variable(rng.normal(0, 0.02, (fan_in, fan_out)).astype(np.float32))
        self.bias = tf.Variable(rng.normal(0, 0.05, (fan_out,)).astype(np.float32))

    def __call__(self, x):
        return tf.matmul(x, self.kernel) + self.bias


class LayerNorm(tf.Module):
    def __init__(self, rng: np.random.Generator, width: int) -> None:
        super().__init__()
        self.gamma = tf.Variable((1 + rng.normal(0, 0.1, (width,))).astype(np.float32))
        self.beta = tf.Variable(rng.normal(0, 0.05, (width,)).astype(np.float32))

    def __call__(self, x):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) / tf.sqrt(variance + 1e-12) * self.gamma + self.beta


class Embeddings(tf.Module):
    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        h = CONFIG["hidden_size"]
        self.word_embeddings = tf.Variable(rng.normal(0, 0.02, (CONFIG["vocab_size"], h)).astype(np.float32))
        self.position_embeddings = tf.Variable(
            rng.normal(0, 0.02, (CONFIG["max_position_embeddings"], h)).astype(np.float32))
        self.token_type_embeddings = tf.Variable(rng.normal(0, 0.02, (CONFIG["type_vocab_size"], h)).astype(np.float32))
        self.LayerNorm = LayerNorm(rng, h)

    def __call__(self, ids, types):
        positions = tf.range(tf.shape(ids)[1])
        x = (tf.gather(self.word_embeddings, ids) + tf.gather(self.position_embeddings, positions)[None]
             + tf.gather(self.token_type_embeddings, types))
        return self.LayerNorm(x)


class Layer(tf.Module):
    """One encoder layer, its objects named as Google BERT's variable scopes."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        h, i = CONFIG["hidden_size"], CONFIG["intermediate_size"]
        self.attention = tf.Module()
        setattr(self.attention, "self", tf.Module())
        attention_self = getattr(self.attention, "self")
        attention_self.query, attention_self.key, attention_self.value = (Dense(rng, h, h) for _ in range(3))
        self.attention.output = tf.Module()
        self.attention.output.dense = Dense(rng, h, h)
        self.attention.output.LayerNorm = LayerNorm(rng, h)
        self.intermediate = tf.Module()
        self.intermediate.dense = Dense(rng, h, i)
        self.output = tf.Module()
        self.output.dense = Dense(rng, i, h)
        self.output.LayerNorm = LayerNorm(rng, h)

    def __call__(self, x, additive_mask):
        heads = CONFIG["num_attention_heads"]
        batch, seq, width = tf.shape(x)[0], tf.shape(x)[1], CONFIG["hidden_size"]
        size = width // heads
        attention_self = getattr(self.attention, "self")

        def split(t):
            return tf.transpose(tf.reshape(t, [batch, seq, heads, size]), [0, 2, 1, 3])

        q, k, v = split(attention_self.query(x)), split(attention_self.key(x)), split(attention_self.value(x))
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(size) + additive_mask
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, seq, width])
        x = self.attention.output.LayerNorm(self.attention.output.dense(context) + x)
        inner = tf.nn.gelu(self.intermediate.dense(x), approximate=False)
        return self.output.LayerNorm(self.output.dense(inner) + x)


class Bert(tf.Module):
    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.embeddings = Embeddings(rng)
        self.encoder = tf.Module()
        for n in range(CONFIG["num_hidden_layers"]):
            setattr(self.encoder, f"layer_{n}", Layer(rng))
        self.pooler = tf.Module()
        self.pooler.dense = Dense(rng, CONFIG["hidden_size"], CONFIG["hidden_size"])

    def __call__(self, ids, types, mask):
        additive = (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * -10000.0
        x = self.embeddings(ids, types)
        for n in range(CONFIG["num_hidden_layers"]):
            x = getattr(self.encoder, f"layer_{n}")(x, additive)
        return x, tf.tanh(self.pooler.dense(x[:, 0]))


def batches(rng: np.random.Generator):
    """Two batches: 2 rows of 11 tokens and 3 rows of 15, some padded, token types 0/1."""
    out = []
    for rows, length in ((2, 11), (3, 15)):
        ids = rng.integers(10, CONFIG["vocab_size"], (rows, length))
        ids[:, 0], types, mask = 7, np.zeros((rows, length), np.int64), np.ones((rows, length), np.int64)
        for r in range(rows):
            real = length - 3 * r
            ids[r, real - 1] = 8
            ids[r, real:] = 0
            mask[r, real:] = 0
            types[r, real // 2:real] = 1
        out.append((ids.astype(np.int64), types, mask))
    return out


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    tf.random.set_seed(SEED)
    bert = Bert(rng)
    data = batches(rng)
    optimizer = tf_keras.optimizers.legacy.Adam(learning_rate=1e-3)
    with tf.GradientTape() as tape:  # one step, so that the optimizer has slots and an iteration count
        sequence, pooled = bert(*data[0])
        loss = tf.reduce_sum(pooled ** 2) + tf.reduce_sum(sequence ** 2) * 1e-3
    variables = bert.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    checkpoint = tf.train.Checkpoint(bert=bert, optimizer=optimizer)
    prefix = checkpoint.save(str(out / "ckpt"))
    references = {}
    for b, (ids, types, mask) in enumerate(data):
        sequence, pooled = bert(ids, types, mask)
        references.update({f"batch{b}_input_ids": ids, f"batch{b}_token_type_ids": types,
                           f"batch{b}_attention_mask": mask, f"batch{b}_last_hidden_state": sequence.numpy(),
                           f"batch{b}_pooler_output": pooled.numpy()})
    np.savez_compressed(out / "reference_outputs.npz", **references)
    (out / "bert_config.json").write_text(json.dumps(CONFIG, indent=2, sort_keys=True) + "\n")
    # a second, tiny checkpoint holding a multi-element DT_STRING variable (empty, short and
    # non-ASCII elements), to check the string-tensor checksum beyond the scalar object graph
    strings = tf.train.Checkpoint(texts=tf.Variable(STRINGS))
    strings.write(str(out / "strings"))
    names = [name for name, _ in tf.train.list_variables(prefix)]
    info = {"prefix": Path(prefix).name, "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
            "numpy": np.__version__, "seed": SEED, "variables": {
                name: {"shape": list(shape), "dtype": str(np.asarray(tf.train.load_variable(prefix, name)).dtype)}
                for name, shape in tf.train.list_variables(prefix)}}
    (out / "fixture_info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    print(prefix, len(names), "tensors")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tf2_object")
