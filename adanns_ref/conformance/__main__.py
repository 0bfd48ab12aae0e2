"""python -m adanns_ref.conformance: see the package docstring."""
import sys

from .cli import main

sys.exit(main())
