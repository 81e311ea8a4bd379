"""``python -m simonsca.finetune.scratch`` -- see :mod:`simonsca.finetune.scratch.cli`."""

import sys

from simonsca.finetune.scratch.cli import main

sys.exit(main())
