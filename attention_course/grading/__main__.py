"""``python -m attention_course.grading ...``: the ``attention-grade`` command."""
import sys

from .cli import main

sys.exit(main())
