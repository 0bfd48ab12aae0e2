"""sentence-transformers as a target, without a model download: `quantize_embeddings`
(int8 / uint8 / binary / ubinary, with and without calibration embeddings) and `truncate_dim`.

`truncate(x, d, normalize)` runs the real `SentenceTransformer.encode(texts, truncate_dim=d,
normalize_embeddings=normalize)` on a tiny model built in memory, no download: a
`StaticEmbedding` whose WordLevel tokenizer maps the text "t<i>" to token i and whose embedding
row i is x[i], so the model's output for "t<i>" is x[i] exactly (the mean of one token) and
encode's own truncation and normalisation are what is tested (sentence_transformer/model.py:
`truncate_embeddings` then `torch.nn.functional.normalize`). `SentenceTransformersNormalizeModule`
is the other route: the same model with a `Normalize` module at the end of its stack, which
normalises at full D inside forward, before `truncate_dim` cuts; encode is called with
normalize_embeddings=False (normalize=True of the check selects the Normalize module).

Expected: quantize identical (the same documented rule), truncate without normalisation
identical, with normalisation equal up to rounding (it normalises x[:d] once, the oracle
normalises at D first then re-normalises the prefix: equal in exact arithmetic).
"""
import numpy as np

from ..target import Target


class SentenceTransformersTarget(Target):
    name = "sentence-transformers"
    library = "sentence-transformers"
    imports = ("from sentence_transformers.util import quantize_embeddings\n"
               "from sentence_transformers import SentenceTransformer\n"
               "from sentence_transformers.sentence_transformer.modules import StaticEmbedding, Normalize\n"
               "from tokenizers import Tokenizer, models, pre_tokenizers\n")
    normalize_module = False
    claims = {"*": "identical", **{f"truncate d={d} normalize=True": "ties" for d in (4, 8, 16, 32)}}

    def quantize(self, x, precision, calibration):
        from sentence_transformers.util import quantize_embeddings
        return quantize_embeddings(x, precision=precision, calibration_embeddings=calibration)

    def truncate(self, x, d, normalize):
        scope = {"np": np, "x": np.ascontiguousarray(x, np.float32)}
        exec(self.imports + _model_source(self.normalize_module and normalize)
             + _encode_source(d, normalize and not self.normalize_module), scope)
        return scope["got"]

    def snippet(self, method, **p):
        if method == "quantize":
            return (f"got = quantize_embeddings({p['x']}, precision={p['precision']!r}, "
                    f"calibration_embeddings={p['calibration']})\n")
        if method == "truncate":
            return (f"x = {p['x']}\n" + _model_source(self.normalize_module and p["normalize"])
                    + _encode_source(p["d"], p["normalize"] and not self.normalize_module))
        return None


def _model_source(with_normalize):
    """Source building `model`: text "t<i>" -> x[i] exactly (one token, its embedding row)."""
    return ("vocab = {f't{i}': i for i in range(len(x))}\nvocab['[UNK]'] = len(x)\n"
            "tokenizer = Tokenizer(models.WordLevel(vocab, unk_token='[UNK]'))\n"
            "tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()\n"
            "static = StaticEmbedding(tokenizer, embedding_weights=np.concatenate([x, np.zeros((1, x.shape[1]), np.float32)]))\n"
            f"model = SentenceTransformer(modules=[static{', Normalize()' if with_normalize else ''}], device='cpu')\n")


def _encode_source(d, normalize):
    return (f"got = model.encode([f't{{i}}' for i in range(len(x))], truncate_dim={d}, "
            f"normalize_embeddings={normalize}, batch_size=512, convert_to_numpy=True)\n")


class SentenceTransformersNormalizeModule(SentenceTransformersTarget):
    name = "sentence-transformers (Normalize module, then truncate_dim)"
    normalize_module = True
    claims = {}  # nothing claimed: the report states what this route returns
    quantize = Target.quantize  # not overridden: quantization is the other adapter's
