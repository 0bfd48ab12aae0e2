"""Layer 6: adaptive retrieval. `funnel` (rerank, funnel_search, mixed-precision funnels),
`index` (FunnelIndex: a database prepared once) and `kernels` (fused prefix scan + top-k,
in-place re-rank)."""
from .funnel import funnel_search, mixed_funnel_search, rerank
from .index import FunnelIndex

__all__ = ["FunnelIndex", "funnel_search", "mixed_funnel_search", "rerank"]
