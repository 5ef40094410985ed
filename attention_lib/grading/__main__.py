"""``python -m attention_lib.grading ...``: the ``attention-grade`` command."""
import sys

from .cli import main

sys.exit(main())
