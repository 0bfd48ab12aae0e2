"""sentence-transformers as a target, without a model download: `quantize_embeddings`
(int8 / uint8 / binary / ubinary, with and without calibration embeddings) and `truncate_dim`.

`truncate(x, d, normalize)` runs what `SentenceTransformer.encode(..., truncate_dim=d,
normalize_embeddings=normalize)` does to a model's output (sentence_transformer/model.py):
`util.truncate_embeddings(emb, d)`, then, if normalize_embeddings,
`torch.nn.functional.normalize(emb, p=2, dim=1)`. `SentenceTransformersNormalizeModule` is the
other documented route: a model whose module stack ends with `models.Normalize` normalises at
full D inside forward, before `truncate_dim` cuts it; run here through a real Normalize module.

Expected: quantize identical (the same documented rule), truncate without normalisation
identical, with normalisation equal up to rounding (it normalises x[:d] once, the oracle
normalises at D first then re-normalises the prefix: equal in exact arithmetic).
"""
import numpy as np

from ..target import Target


class SentenceTransformersTarget(Target):
    name = "sentence-transformers"
    library = "sentence-transformers"
    imports = ("import torch\nfrom sentence_transformers.util import quantize_embeddings, "
               "truncate_embeddings\n")
    claims = {"*": "identical", **{f"truncate d={d} normalize=True": "ties" for d in (4, 8, 16, 32)}}

    def quantize(self, x, precision, calibration):
        from sentence_transformers.util import quantize_embeddings
        return quantize_embeddings(x, precision=precision, calibration_embeddings=calibration)

    def truncate(self, x, d, normalize):
        import torch
        from sentence_transformers.util import truncate_embeddings
        emb = truncate_embeddings(torch.from_numpy(np.ascontiguousarray(x)), d)
        if normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb.numpy()

    def snippet(self, method, **p):
        if method == "quantize":
            return (f"got = quantize_embeddings({p['x']}, precision={p['precision']!r}, "
                    f"calibration_embeddings={p['calibration']})\n")
        if method == "truncate":
            return (f"got = truncate_embeddings(torch.from_numpy({p['x']}), {p['d']})\n"
                    + ("got = torch.nn.functional.normalize(got, p=2, dim=1)\n" if p["normalize"] else "")
                    + "got = got.numpy()\n")
        return None


class SentenceTransformersNormalizeModule(Target):
    name = "sentence-transformers (Normalize module, then truncate_dim)"
    imports = "import torch\nfrom sentence_transformers.sentence_transformer.modules import Normalize\nfrom sentence_transformers.util import truncate_embeddings\n"
    library = "sentence-transformers"
    claims = {}  # nothing claimed: the report states what this route returns

    def truncate(self, x, d, normalize):
        import torch
        from sentence_transformers.sentence_transformer.modules import Normalize
        from sentence_transformers.util import truncate_embeddings
        emb = torch.from_numpy(np.ascontiguousarray(x))
        if normalize:
            emb = Normalize()({"sentence_embedding": emb})["sentence_embedding"]
        return truncate_embeddings(emb, d).numpy()

    def snippet(self, method, **p):
        if method == "truncate":
            return (f"emb = torch.from_numpy({p['x']})\n"
                    + ("emb = Normalize()({'sentence_embedding': emb})['sentence_embedding']\n" if p["normalize"] else "")
                    + f"got = truncate_embeddings(emb, {p['d']}).numpy()\n")
        return None
