"""``python -m simonsca.finetune`` -- see :mod:`simonsca.finetune.cli`."""

import sys

from simonsca.finetune.cli import main

sys.exit(main())
