"""Layer 9: language-neutral golden test vectors (``python -m adanns_ref.golden``). `store`
writes and checks the files and the manifest; `cases` declares the cases and runs our
implementation on them."""
from .store import ManifestError, check, generate, load_case, load_manifest, main

__all__ = ["ManifestError", "check", "generate", "load_case", "load_manifest", "main"]
