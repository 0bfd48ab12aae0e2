"""Layer 0: what every algorithm uses. Input validation (`validate`), the versioned .npz files
(`persist`), faiss's mt19937 helpers (`mt19937`), faiss's SIMD summation orders (`simd`), the
top-k heaps and reservoirs (`topk`), Matryoshka truncation (`truncate`), the FLOP / byte cost
model (`cost`) and the BLAS / numba thread rules (`threads`); `numba_notice` says on stderr when
the kernels compile (first run only). Imports nothing else from adanns_ref."""
from .numba_notice import install

install()
