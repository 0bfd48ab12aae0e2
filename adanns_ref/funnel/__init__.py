"""Layer 6: adaptive retrieval. `funnel` (rerank, funnel_search, mixed-precision funnels),
`index` (FunnelIndex: a database prepared once), `kernels` (stage 0: fused prefix scan + top-k)
and `rerank_kernels` (in-place re-rank of the shortlisted rows)."""
from .funnel import funnel_search, mixed_funnel_search, rerank
from .index import FunnelIndex

__all__ = ["FunnelIndex", "funnel_search", "mixed_funnel_search", "rerank"]
