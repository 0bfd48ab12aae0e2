"""python -m adanns_ref.golden: write or check the golden test vectors (`golden.store.main`)."""
import sys

from .store import main

sys.exit(main())
